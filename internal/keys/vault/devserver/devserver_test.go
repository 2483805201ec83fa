package devserver

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestKeyScanner(t *testing.T) {
	var out strings.Builder
	k := &keyScanner{w: &out, found: make(chan struct{})}
	in := "==> Vault server started!\n\nUnseal Key: abc+/=123\nRoot Token: root\n"
	// The banner arrives in pieces that split the line.
	for _, p := range []string{in[:30], in[30:33], in[33:]} {
		if _, err := k.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	if out.String() != in {
		t.Errorf("passed on %q, want %q", out.String(), in)
	}
	key, err := k.wait(context.Background(), nil)
	if err != nil || key != "abc+/=123" {
		t.Errorf("key %q, %v; want abc+/=123", key, err)
	}
}

func TestStartMissingBinary(t *testing.T) {
	_, err := Start(context.Background(), filepath.Join(t.TempDir(), "no-vault"), Options{Dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "no-vault") || !strings.Contains(err.Error(), "make vault-bin") {
		t.Errorf("err = %v, want one naming the binary and `make vault-bin`", err)
	}
}

func TestStartExits(t *testing.T) {
	bin, err := exec.LookPath("false")
	if err != nil {
		t.Skip("no false(1)")
	}
	dir := t.TempDir()
	_, err = Start(context.Background(), bin, Options{Dir: dir})
	if err == nil {
		t.Fatal("started false(1) as a Vault server")
	}
	for _, want := range []string{bin, "exited before it was healthy", filepath.Join(dir, LogName)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to name %q", err, want)
		}
	}
}

// TestStart runs a real dev server if BORDERLINK_VAULT_BIN names one (the
// packages that use this one test it with theirs).
func TestStart(t *testing.T) {
	bin := os.Getenv("BORDERLINK_VAULT_BIN")
	if bin == "" {
		t.Skip("BORDERLINK_VAULT_BIN is not set")
	}
	dir := t.TempDir()
	s, err := Start(context.Background(), bin, Options{Dir: dir, RootToken: "t-root"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	if s.UnsealKey == "" || s.RootToken != "t-root" || s.PID() <= 0 || !filepath.IsAbs(s.Bin) {
		t.Errorf("server %+v, pid %d", s, s.PID())
	}
	if s.LogFile != filepath.Join(dir, LogName) {
		t.Errorf("LogFile = %q", s.LogFile)
	}
	// The token file lands in the server's HOME, Dir.
	if _, err := os.Stat(filepath.Join(dir, ".vault-token")); err != nil {
		t.Errorf("no token file in Dir: %v", err)
	}
	s.Stop()
	s.Stop()
	c := &http.Client{Timeout: time.Second}
	if resp, err := c.Get(s.Addr + "/v1/sys/health"); err == nil {
		resp.Body.Close()
		t.Errorf("%s still answers after Stop", s.Addr)
	}
}
