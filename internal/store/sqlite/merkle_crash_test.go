package sqlite_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/borderlink/borderlink/internal/audit"
	"github.com/borderlink/borderlink/internal/store/sqlite"
	"github.com/borderlink/borderlink/internal/store/storetest"
)

const (
	merkleCrashEnv = "BORDERLINK_MERKLE_CRASH_CHILD_DB"
	merkleCrashKey = "BORDERLINK_MERKLE_CRASH_CHILD_KEY"
	crashAppends   = 5000
)

// TestMerkleLogSurvivesKill: a child process appends concurrently (group
// commit) while checkpointing every few milliseconds and reports each
// acknowledged seq and signed checkpoint; it is SIGKILLed after 5,000
// acknowledgements. After reopening, the log must verify, contain every
// acknowledged record at its seq, and be consistent with every checkpoint
// signed before the kill.
func TestMerkleLogSurvivesKill(t *testing.T) {
	if path := os.Getenv(merkleCrashEnv); path != "" {
		merkleCrashChild(path, os.Getenv(merkleCrashKey))
		return
	}
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	sk, vk, err := audit.GenerateKey(testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "borderlink.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestMerkleLogSurvivesKill$")
	cmd.Env = append(os.Environ(), merkleCrashEnv+"="+path, merkleCrashKey+"="+sk)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[uint64]string{} // seq -> request id
	signed := map[int64]bool{}
	sc := bufio.NewScanner(out)
	for len(acked) < crashAppends && sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 3 && f[0] == "acked":
			seq, _ := strconv.ParseUint(f[1], 10, 64)
			acked[seq] = f[2]
		case len(f) == 2 && f[0] == "checkpoint":
			n, _ := strconv.ParseInt(f[1], 10, 64)
			signed[n] = true
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatalf("kill child: %v", err)
	}
	cmd.Wait()
	if len(acked) < crashAppends {
		t.Fatalf("child acknowledged only %d appends before exiting", len(acked))
	}

	s := openTemp(t, path)
	ctx := t.Context()
	n := sqlite.CheckTree(t, s)
	leaves, err := s.AuditLeaves(ctx, 0, n)
	if err != nil {
		t.Fatal(err)
	}
	for seq, id := range acked {
		if seq > uint64(n) {
			t.Fatalf("acknowledged seq %d is missing after the kill (log has %d)", seq, n)
		}
		rec, err := audit.ParseLeaf(int64(seq)-1, leaves[seq-1])
		if err != nil || rec.GetRequestId() != id {
			t.Fatalf("seq %d after the kill: %v, request %q, want %q", seq, err, rec.GetRequestId(), id)
		}
	}
	cps, err := s.AuditCheckpoints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stored := map[int64]bool{}
	in := audit.LogInput{Leaves: leaves}
	for _, c := range cps {
		stored[c.Size] = true
		in.Checkpoints = append(in.Checkpoints, c.Note)
	}
	for size := range signed {
		if !stored[size] {
			t.Errorf("checkpoint of size %d was returned before the kill but is not stored", size)
		}
	}
	if len(signed) == 0 {
		t.Error("no checkpoint was signed before the kill")
	}
	in.Verifier, err = audit.NewVerifier(vk, testOrigin)
	if err != nil {
		t.Fatal(err)
	}
	res, err := audit.VerifyLog(in)
	if err != nil {
		t.Fatalf("log after the kill does not verify: %v", err)
	}
	t.Logf("after kill: %d records (%d acknowledged), %d checkpoints verified", res.Size, len(acked), res.Checkpoints)
}

func merkleCrashChild(path, skey string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second) // in case the parent dies
	defer cancel()
	die := func(err error) { fmt.Fprintln(os.Stderr, err); os.Exit(2) }
	s, err := sqlite.Open(ctx, path)
	if err != nil {
		die(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		die(err)
	}
	cp, err := audit.NewCheckpointer(s, signer, testOrigin, nil)
	if err != nil {
		die(err)
	}
	var mu sync.Mutex // one line at a time on stdout
	say := func(format string, args ...any) { mu.Lock(); fmt.Printf(format, args...); mu.Unlock() }
	go func() {
		for ctx.Err() == nil {
			msg, err := cp.Sign(ctx)
			if err == nil {
				if c, err := audit.ParseCheckpoint(strings.SplitN(string(msg), "\n\n", 2)[0] + "\n"); err == nil {
					say("checkpoint %d\n", c.Size)
				}
			}
			time.Sleep(3 * time.Millisecond)
		}
	}()
	var wg sync.WaitGroup
	for w := range 64 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				seq, err := s.AppendAudit(ctx, storetest.AuditRecord(id, 0))
				if err != nil {
					die(err)
				}
				say("acked %d %s\n", seq, id)
			}
		})
	}
	wg.Wait()
	os.Exit(0)
}
