// Package vaulttest starts a real Vault dev server for tests (through
// devserver) and adds what tests need: the binary from the environment,
// testing.TB helpers, Seal and Unseal.
//
// The binary comes from the environment variable BORDERLINK_VAULT_BIN,
// which `make test` sets after building bin/vault from tools/vault (Vault's
// `minimal` build: approle, kv, pki, transit). A test that needs Vault and
// finds no binary fails, saying how to get one, unless
// BORDERLINK_SKIP_VAULT=1 is set, in which case it is skipped: a missing
// integration test is a decision someone has to make, never an accident.
package vaulttest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/borderlink/borderlink/internal/keys/vault/devserver"
)

// Environment variables read by Start.
const (
	EnvBin  = "BORDERLINK_VAULT_BIN"
	EnvSkip = "BORDERLINK_SKIP_VAULT"
)

// RootToken is the dev server's root token.
const RootToken = "root"

// Server is a running dev server.
type Server struct {
	// Addr is its URL, e.g. http://127.0.0.1:41234.
	Addr string
	// Token is the root token.
	Token string
	// UnsealKey is the dev server's single unseal key (printed by
	// `vault server -dev` as "Unseal Key: ..."), for tests that seal the
	// server with Seal and unseal it again with Unseal.
	UnsealKey string

	srv *devserver.Server
	log *syncBuffer
}

// Bin returns the Vault binary to use, or fails or skips t as the package
// doc describes.
func Bin(t testing.TB) string {
	t.Helper()
	bin := os.Getenv(EnvBin)
	if bin == "" {
		if os.Getenv(EnvSkip) == "1" {
			t.Skipf("%s=1: skipping a test that needs a Vault server", EnvSkip)
		}
		t.Fatalf("this test needs a Vault binary: run it via `make test` (which builds bin/vault and sets %s), "+
			"or set %s=/path/to/vault, or set %s=1 to skip it", EnvBin, EnvBin, EnvSkip)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s=%s: %v (run `make vault-bin`)", EnvBin, bin, err)
	}
	return bin
}

// Start starts a dev server in t.TempDir() on a free loopback port, waits
// until it is healthy and stops it when t ends. Its log is shown if t
// fails.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := Bin(t)
	log := &syncBuffer{}
	srv, err := devserver.Start(context.Background(), bin, devserver.Options{Dir: t.TempDir(), RootToken: RootToken, Log: log})
	if err != nil {
		t.Fatalf("%v\nvault log:\n%s", err, log.String())
	}
	s := &Server{Addr: srv.Addr, Token: srv.RootToken, UnsealKey: srv.UnsealKey, srv: srv, log: log}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("vault server log:\n%s", log.String())
		}
	})
	return s
}

// Seal seals the server (sys/seal with the root token): every call but
// sys/health and sys/seal-status fails with 503 "Vault is sealed" until
// Unseal. The server keeps its in-memory data.
func (s *Server) Seal(t testing.TB) {
	t.Helper()
	if err := s.put("sys/seal", nil); err != nil {
		t.Fatalf("seal vault: %v", err)
	}
}

// Unseal unseals the server with its unseal key and waits until it is
// healthy (unsealed and active) again.
func (s *Server) Unseal(t testing.TB) {
	t.Helper()
	if err := s.put("sys/unseal", map[string]string{"key": s.UnsealKey}); err != nil {
		t.Fatalf("unseal vault: %v", err)
	}
	if err := s.srv.WaitHealthy(context.Background()); err != nil {
		t.Fatalf("after unseal: %v", err)
	}
}

func (s *Server) put(path string, body any) error {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(http.MethodPut, s.Addr+"/v1/"+path, r)
	if err != nil {
		return err
	}
	req.Header.Set("X-Vault-Token", s.Token)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("PUT %s: HTTP %d: %s", path, resp.StatusCode, bytes.TrimSpace(msg))
	}
	return nil
}

// Stop stops the server and waits for it to exit. It is safe to call more
// than once.
func (s *Server) Stop() { s.srv.Stop() }

// Log returns what the server has written so far.
func (s *Server) Log() string { return s.log.String() }

// syncBuffer is a bytes.Buffer safe for the server's two output streams
// and a reader.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
