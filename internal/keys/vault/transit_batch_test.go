package vault_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	vaultapi "github.com/hashicorp/vault/api"
	"golang.org/x/mod/sumdb/note"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/keys"
	"github.com/borderlink/borderlink/internal/keys/vault"
)

// batchFixture is a dev server with a BatchSigner and the unbatched
// Signer it wraps, both for the transit key InitDev made.
type batchFixture struct {
	*fixture
	signer *vault.Signer
	batch  *vault.BatchSigner
}

func newBatchFixture(t *testing.T, o vault.BatchOptions) *batchFixture {
	t.Helper()
	f := newFixture(t, vault.InitDevOptions{})
	s, err := f.client(t).NewSigner(context.Background(), origin)
	if err != nil {
		t.Fatal(err)
	}
	return &batchFixture{fixture: f, signer: s, batch: vault.NewBatchSigner(s, o)}
}

// holdFirstBatch makes b's first batch wait until want messages are
// queued, so that they all go in one request. It returns when that
// request has been started.
func holdFirstBatch(t *testing.T, b *vault.BatchSigner, encode func([]byte) string, want int) (release func()) {
	t.Helper()
	gate := make(chan struct{})
	var once sync.Once
	vault.SetBatchHooks(b, encode, func() { once.Do(func() { <-gate }) })
	return func() {
		for b.Pending() < want {
			time.Sleep(time.Millisecond)
		}
		close(gate)
	}
}

// signAll signs msgs concurrently with s, one goroutine each.
func signAll(s note.Signer, msgs [][]byte) (sigs [][]byte, errs []error) {
	sigs, errs = make([][]byte, len(msgs)), make([]error, len(msgs))
	var wg sync.WaitGroup
	for i, m := range msgs {
		wg.Go(func() { sigs[i], errs[i] = s.Sign(m) })
	}
	wg.Wait()
	return sigs, errs
}

func receiptTexts(n int) [][]byte {
	msgs := make([][]byte, n)
	for i := range msgs {
		msgs[i] = []byte(audit.Receipt{
			Origin: origin, Index: int64(i), Time: time.Date(2026, 11, 30, 4, 0, 0, i, time.UTC),
			RequestID: fmt.Sprintf("req-%d", i), Caller: "spiffe://sg.customs.example/gateway",
		}.Text())
	}
	return msgs
}

// enableAuditLog turns on Vault's file audit device, so that tests count
// the requests Vault itself received.
func enableAuditLog(t *testing.T, root *vaultapi.Client) (count func(path string) int) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "vault-audit.log")
	if err := root.Sys().EnableAuditWithOptions("file", &vaultapi.EnableAuditOptions{Type: "file", Options: map[string]string{"file_path": file}}); err != nil {
		t.Fatalf("enable audit device: %v", err)
	}
	return func(path string) int {
		t.Helper()
		fh, err := os.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		defer fh.Close()
		n := 0
		sc := bufio.NewScanner(fh)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			var e struct {
				Type    string `json:"type"`
				Request struct {
					Path string `json:"path"`
				} `json:"request"`
			}
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("audit log line %q: %v", sc.Text(), err)
			}
			if e.Type == "request" && e.Request.Path == path {
				n++
			}
		}
		if err := sc.Err(); err != nil {
			t.Fatal(err)
		}
		return n
	}
}

// TestBatchSigner: concurrent signatures are coalesced into bounded
// transit batches, and each is exactly what the unbatched Signer makes
// (Ed25519 is deterministic), so notes are byte-identical.
func TestBatchSigner(t *testing.T) {
	t.Parallel()
	const maxBatch = 8
	f := newBatchFixture(t, vault.BatchOptions{MaxBatch: maxBatch, MaxInFlight: 1})
	signPath := "transit/sign/" + keys.DefaultVaultTransitKey
	requests := enableAuditLog(t, f.root)
	b := f.batch
	if b.Name() != f.signer.Name() || b.KeyHash() != f.signer.KeyHash() || b.VerifierKey() != f.setup.VerifierKey {
		t.Fatalf("BatchSigner is %s+%08x (%s); want the Signer's %s+%08x (%s)", b.Name(), b.KeyHash(), b.VerifierKey(), f.signer.Name(), f.signer.KeyHash(), f.setup.VerifierKey)
	}

	// 3 full batches and a partial one, all queued before the first is
	// taken: exactly 4 requests.
	const n = 3*maxBatch + 5
	msgs := receiptTexts(n)
	release := holdFirstBatch(t, b, nil, n)
	var (
		sigs [][]byte
		errs []error
		done = make(chan struct{})
	)
	go func() { sigs, errs = signAll(b, msgs); close(done) }()
	release()
	<-done
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Sign %d: %v", i, err)
		}
	}
	if got, want := b.Stats(), (vault.BatchStats{Requests: 4, Signatures: n, Largest: maxBatch}); got != want {
		t.Errorf("Stats = %+v; want %+v", got, want)
	}
	if got, want := requests(signPath), 4; got != want {
		t.Errorf("Vault's audit log has %d requests to %s; want %d", got, signPath, want)
	}
	for i, m := range msgs {
		want, err := f.signer.Sign(m)
		if err != nil {
			t.Fatal(err)
		}
		if string(sigs[i]) != string(want) {
			t.Errorf("message %d: batched signature %x; want the Signer's %x", i, sigs[i], want)
		}
	}

	// As a note.Signer: receipts signed concurrently verify with the
	// published key and are the notes the Signer makes.
	v, err := note.NewVerifier(f.setup.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 64 {
		wg.Go(func() {
			r := audit.Receipt{Origin: origin, Index: int64(i), Time: time.Unix(int64(i), 0), RequestID: fmt.Sprint("r", i), Caller: "spiffe://sg.customs.example/gateway"}
			got, err := audit.SignReceipt(b, r)
			if err != nil {
				t.Errorf("receipt %d: %v", i, err)
				return
			}
			if _, err := audit.OpenReceipt(got, v); err != nil {
				t.Errorf("receipt %d does not verify with the published key: %v", i, err)
			}
			if want, err := audit.SignReceipt(f.signer, r); err != nil || got != want {
				t.Errorf("receipt %d: batched note %q, unbatched %q (%v)", i, got, want, err)
			}
		})
	}
	wg.Wait()
	if st := b.Stats(); st.Largest > maxBatch {
		t.Errorf("a batch of %d messages was sent; want at most %d", st.Largest, maxBatch)
	}
	assertNoSenders(t, f.batch)
}

// assertNoSenders checks that none of b's sending goroutines outlives
// the Sign calls it served: an idle BatchSigner keeps none.
func assertNoSenders(t *testing.T, b *vault.BatchSigner) {
	t.Helper()
	// A sender leaves just after delivering its last batch, so it may
	// still be on its way out when the last Sign returns.
	for range 500 {
		if b.Senders() == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("%d BatchSigner goroutines left after every Sign returned", b.Senders())
}

// TestBatchSignerItemError: Vault rejects one message of a batch; only its
// caller gets the error, the others their signatures.
func TestBatchSignerItemError(t *testing.T) {
	t.Parallel()
	f := newBatchFixture(t, vault.BatchOptions{MaxInFlight: 1})
	msgs := receiptTexts(5)
	bad := string(msgs[2])
	encode := func(m []byte) string {
		if string(m) == bad {
			return "not base64!"
		}
		return base64.StdEncoding.EncodeToString(m)
	}
	release := holdFirstBatch(t, f.batch, encode, len(msgs))
	var (
		sigs [][]byte
		errs []error
		done = make(chan struct{})
	)
	go func() { sigs, errs = signAll(f.batch, msgs); close(done) }()
	release()
	<-done
	if st := f.batch.Stats(); st.Requests != 1 {
		t.Fatalf("Stats = %+v; want the 5 messages in one request", st)
	}
	for i, err := range errs {
		if i == 2 {
			t.Logf("rejected item: %v", err)
			if err == nil || !strings.Contains(err.Error(), "unable to decode input") || !strings.Contains(err.Error(), f.srv.Addr) || errors.Is(err, keys.ErrUnavailable) {
				t.Errorf("Sign(rejected item) error = %v; want Vault's reason naming %s, not ErrUnavailable", err, f.srv.Addr)
			}
			continue
		}
		if err != nil || len(sigs[i]) != 64 {
			t.Errorf("Sign %d in a batch with a rejected item: %x, %v; want a signature", i, sigs[i], err)
		}
	}
	assertNoSenders(t, f.batch)
}

// TestBatchSignerSealed: every caller waiting on a batch gets the sealed
// error; after unsealing the same BatchSigner signs again.
func TestBatchSignerSealed(t *testing.T) {
	t.Parallel()
	f := newBatchFixture(t, vault.BatchOptions{MaxInFlight: 1})
	msgs := receiptTexts(6)
	release := holdFirstBatch(t, f.batch, nil, len(msgs))
	f.srv.Seal(t)
	var (
		errs []error
		done = make(chan struct{})
	)
	go func() { _, errs = signAll(f.batch, msgs); close(done) }()
	release()
	<-done
	for i, err := range errs {
		if !errors.Is(err, keys.ErrUnavailable) || !strings.Contains(err.Error(), "sealed") || !strings.Contains(err.Error(), f.srv.Addr) {
			t.Errorf("Sign %d while sealed: error = %v; want ErrUnavailable saying sealed and naming %s", i, err, f.srv.Addr)
		}
	}
	if st := f.batch.Stats(); st.Requests != 1 {
		t.Errorf("Stats = %+v; want the 6 messages in one request", st)
	}
	f.srv.Unseal(t)
	v, err := note.NewVerifier(f.setup.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := note.Sign(&note.Note{Text: string(msgs[0])}, f.batch)
	if err != nil {
		t.Fatalf("sign after unseal: %v", err)
	}
	if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
		t.Errorf("signed after unseal, does not verify: %v", err)
	}
	assertNoSenders(t, f.batch)
}

// TestBatchSignerDenied: the policy loses transit/sign while the gateway
// runs; every waiting caller gets the DeniedError naming the path.
func TestBatchSignerDenied(t *testing.T) {
	t.Parallel()
	f := newBatchFixture(t, vault.BatchOptions{MaxInFlight: 1})
	kvOnly := `path "kv/data/borderlink/` + domain + `/*" { capabilities = ["read"] }`
	if err := f.root.Sys().PutPolicy(f.setup.PolicyName, kvOnly); err != nil {
		t.Fatal(err)
	}
	msgs := receiptTexts(4)
	release := holdFirstBatch(t, f.batch, nil, len(msgs))
	var (
		errs []error
		done = make(chan struct{})
	)
	go func() { _, errs = signAll(f.batch, msgs); close(done) }()
	release()
	<-done
	path := "transit/sign/" + keys.DefaultVaultTransitKey
	for i, err := range errs {
		var d *vault.DeniedError
		if !errors.As(err, &d) || !errors.Is(err, keys.ErrDenied) || d.Path != path || d.Capability != "update" {
			t.Errorf("Sign %d: error = %v; want a DeniedError for update on %s", i, err, path)
		}
	}
	assertNoSenders(t, f.batch)
}
