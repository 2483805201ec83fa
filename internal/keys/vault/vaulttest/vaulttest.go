// Package vaulttest starts a real Vault dev server for tests.
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
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Environment variables read by Start.
const (
	EnvBin  = "BORDERLINK_VAULT_BIN"
	EnvSkip = "BORDERLINK_SKIP_VAULT"
)

// RootToken is the dev server's root token.
const RootToken = "root"

// startTimeout bounds how long a dev server may take to become healthy
// (about 2 s on 2 cores; -race test binaries compete for the CPU).
const startTimeout = 60 * time.Second

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

	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
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
	dir := t.TempDir()
	var last error
	for range 3 { // the free port may be taken between probe and bind
		s, err := start(bin, dir)
		if err == nil {
			t.Cleanup(func() {
				s.Stop()
				if t.Failed() {
					t.Logf("vault server log:\n%s", s.log.String())
				}
			})
			return s
		}
		last = err
	}
	t.Fatalf("start vault dev server: %v", last)
	return nil
}

func start(bin, dir string) (*Server, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin, "server", "-dev",
		"-dev-root-token-id="+RootToken,
		"-dev-listen-address="+addr)
	cmd.Dir = dir
	// HOME keeps the dev server from writing ~/.vault-token of whoever
	// runs the tests; VAULT_* from the caller's shell must not leak in.
	cmd.Env = []string{"HOME=" + dir, "PATH=" + os.Getenv("PATH"), "VAULT_LOG_LEVEL=warn"}
	log := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", bin, err)
	}
	s := &Server{Addr: "http://" + addr, Token: RootToken, cmd: cmd, log: log, done: make(chan struct{})}
	go func() { cmd.Wait(); close(s.done) }()
	if err := s.waitHealthy(); err != nil {
		s.Stop()
		return nil, fmt.Errorf("%w\nvault log:\n%s", err, log.String())
	}
	if err := s.readUnsealKey(); err != nil {
		s.Stop()
		return nil, fmt.Errorf("%w\nvault log:\n%s", err, log.String())
	}
	return s, nil
}

// readUnsealKey takes the unseal key from the dev server's banner, which
// may follow the first healthy answer by a moment.
func (s *Server) readUnsealKey() error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, l := range strings.Split(s.log.String(), "\n") {
			if k, ok := strings.CutPrefix(strings.TrimSpace(l), "Unseal Key: "); ok && k != "" {
				s.UnsealKey = k
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("vault dev server printed no \"Unseal Key:\" line")
		}
		time.Sleep(20 * time.Millisecond)
	}
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
	if err := s.waitHealthy(); err != nil {
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

func (s *Server) waitHealthy() error {
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.Addr+"/v1/sys/health", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.done:
			return fmt.Errorf("vault exited before it was healthy")
		case <-ctx.Done():
			return fmt.Errorf("vault at %s not healthy after %v (last: %v)", s.Addr, startTimeout, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop stops the server and waits for it to exit. It is safe to call more
// than once.
func (s *Server) Stop() {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// Log returns what the server has written so far.
func (s *Server) Log() string { return s.log.String() }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

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
