// Package devserver starts a real HashiCorp Vault dev server (`vault
// server -dev`: in-memory storage, unsealed, one unseal key) from a binary
// on a free loopback port, waits until it is healthy and stops it again.
// It is the one place that does this for the Vault integration tests
// (vaulttest), `borderlink demo --vault-bin` and the bench's Vault
// scenario.
//
// The server runs in a directory of the caller's, which is also its HOME
// (so the dev server's ~/.vault-token lands there, never in the home of
// whoever runs it), without the caller's VAULT_* environment, and on Linux
// dies with the process that started it.
package devserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/borderlink/borderlink/internal/childproc"
	"github.com/borderlink/borderlink/internal/freeport"
)

// DefaultTimeout bounds how long a dev server may take to become healthy
// (about 2 s on 2 cores; -race test binaries and benchmarks compete for
// the CPU).
const DefaultTimeout = 60 * time.Second

// LogName is the log file in Options.Dir when Options.Log is nil.
const LogName = "vault.log"

// attempts is how often Start tries: the free port may be taken between
// probe and bind.
const attempts = 3

// unsealKeyWait bounds how long the unseal key may follow the first
// healthy answer.
const unsealKeyWait = 10 * time.Second

// Options says how to run the server.
type Options struct {
	// Dir is the server's working directory and HOME, made (0700) if
	// missing. Required.
	Dir string
	// RootToken is the root token (-dev-root-token-id); if empty, a
	// random one.
	RootToken string
	// Log receives the server's output (stdout and stderr). If nil, it
	// goes to Dir/vault.log, which errors then name.
	Log io.Writer
	// Timeout bounds how long the server may take to become healthy,
	// DefaultTimeout if 0.
	Timeout time.Duration
}

// Server is a running dev server.
type Server struct {
	// Addr is its URL, e.g. http://127.0.0.1:41234.
	Addr string
	// RootToken is its root token.
	RootToken string
	// UnsealKey is its single unseal key, printed by the dev server as
	// "Unseal Key: ...".
	UnsealKey string
	// Bin is the absolute path of the binary it runs.
	Bin string
	// Dir is its working directory and HOME.
	Dir string
	// LogFile is the file its output goes to, "" if Options.Log was set.
	LogFile string

	timeout time.Duration
	cmd     *exec.Cmd
	done    chan struct{}
	waitErr error // cmd.Wait's answer, set before done is closed
	stop    sync.Once
}

// Start starts `bin server -dev` as Options says on a free loopback port
// and waits until it is healthy and has printed its unseal key, or it
// exits, ctx ends or Options.Timeout passes. The caller must Stop it.
func Start(ctx context.Context, bin string, o Options) (*Server, error) {
	if o.Dir == "" {
		return nil, errors.New("devserver: no directory")
	}
	// The server runs in o.Dir: a relative path must not be resolved there.
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("vault binary: %w (build it with `make vault-bin`)", err)
	}
	if path, err = filepath.Abs(path); err != nil {
		return nil, fmt.Errorf("vault binary %s: %w", bin, err)
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	if o.RootToken == "" {
		o.RootToken = rand.Text()
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	var last error
	for range attempts {
		s, retry, err := start(ctx, path, o)
		if err == nil {
			return s, nil
		}
		last = err
		if !retry || ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("start vault dev server %s: %w", path, last)
}

// start makes one attempt; retry says whether another may succeed (the
// server exited before it was healthy, as it does when another process
// took its port).
func start(ctx context.Context, bin string, o Options) (s *Server, retry bool, err error) {
	// The dev server's cluster listener binds the port after the API's.
	addr, err := freeport.Block(2)
	if err != nil {
		return nil, false, err
	}
	s = &Server{Addr: "http://" + addr, RootToken: o.RootToken, Bin: bin, Dir: o.Dir, timeout: o.Timeout, done: make(chan struct{})}
	out := o.Log
	var logf *os.File
	if out == nil {
		s.LogFile = filepath.Join(o.Dir, LogName)
		if logf, err = os.Create(s.LogFile); err != nil {
			return nil, false, err
		}
		out = logf
	}
	keys := &keyScanner{w: out, found: make(chan struct{})}
	cmd := exec.Command(bin, "server", "-dev",
		"-dev-root-token-id="+o.RootToken,
		"-dev-listen-address="+addr)
	cmd.Dir = o.Dir
	// HOME keeps the dev server from writing ~/.vault-token of whoever
	// runs it; VAULT_* from the caller's shell must not leak in.
	cmd.Env = []string{"HOME=" + o.Dir, "PATH=" + os.Getenv("PATH"), "VAULT_LOG_LEVEL=warn"}
	cmd.Stdout, cmd.Stderr = keys, keys
	childproc.DieWithParent(cmd)
	if err := cmd.Start(); err != nil {
		if logf != nil {
			logf.Close()
		}
		return nil, false, fmt.Errorf("%s: %w", bin, err)
	}
	s.cmd = cmd
	go func() {
		s.waitErr = cmd.Wait()
		if logf != nil {
			logf.Close()
		}
		close(s.done)
	}()
	if err := s.WaitHealthy(ctx); err != nil {
		// Another attempt may succeed where this one lost its port.
		select {
		case <-s.done:
			retry = true
		default:
		}
		s.Stop()
		return nil, retry, s.withLog(err)
	}
	if s.UnsealKey, err = keys.wait(ctx, s.done); err != nil {
		s.Stop()
		return nil, false, s.withLog(err)
	}
	return s, false, nil
}

// withLog adds where the server's log is to err.
func (s *Server) withLog(err error) error {
	if s.LogFile == "" {
		return err
	}
	return fmt.Errorf("%w; see %s", err, s.LogFile)
}

// WaitHealthy waits until the server answers /v1/sys/health with 200
// (initialized, unsealed, active), or it exits, ctx ends or its Timeout
// passes.
func (s *Server) WaitHealthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Addr+"/v1/sys/health", nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		select {
		case <-s.done:
			return s.exited("before it was healthy")
		case <-ctx.Done():
			if ctx.Err() == context.DeadlineExceeded {
				return fmt.Errorf("vault at %s not healthy after %v (last: %v)", s.Addr, s.timeout, err)
			}
			return fmt.Errorf("vault at %s not healthy: %w", s.Addr, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *Server) exited(when string) error {
	if s.waitErr != nil {
		return fmt.Errorf("vault at %s exited %s: %v", s.Addr, when, s.waitErr)
	}
	return fmt.Errorf("vault at %s exited %s", s.Addr, when)
}

// PID is the server's process ID.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Stop interrupts the server and waits for it to exit, killing it after
// 5 s. It is safe to call more than once.
func (s *Server) Stop() {
	s.stop.Do(func() {
		select {
		case <-s.done:
			return
		default:
		}
		if err := s.cmd.Process.Signal(os.Interrupt); err != nil {
			_ = s.cmd.Process.Kill()
		}
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.done
		}
	})
}

// keyScanner passes the server's output on to w and picks the unseal key
// out of the dev server's banner on the way.
type keyScanner struct {
	w     io.Writer
	mu    sync.Mutex
	line  []byte // the unfinished line so far
	key   string
	found chan struct{} // closed when key is set
}

// maxLine bounds the unfinished line kept; longer lines are no banner.
const maxLine = 4096

func (k *keyScanner) Write(p []byte) (int, error) {
	k.mu.Lock()
	if k.key == "" {
		rest := p
		for len(rest) > 0 && k.key == "" {
			i := bytes.IndexByte(rest, '\n')
			if i < 0 {
				if len(k.line)+len(rest) <= maxLine {
					k.line = append(k.line, rest...)
				}
				break
			}
			l := rest[:i]
			if len(k.line) > 0 {
				l = append(k.line, l...)
			}
			if key, ok := strings.CutPrefix(strings.TrimSpace(string(l)), "Unseal Key: "); ok && key != "" {
				k.key = key
				close(k.found)
			}
			k.line, rest = k.line[:0], rest[i+1:]
		}
		if k.key != "" {
			k.line = nil
		}
	}
	k.mu.Unlock()
	return k.w.Write(p)
}

// wait returns the unseal key once the server has printed it, which may
// be a moment after its first healthy answer.
func (k *keyScanner) wait(ctx context.Context, done <-chan struct{}) (string, error) {
	t := time.NewTimer(unsealKeyWait)
	defer t.Stop()
	select {
	case <-k.found:
	case <-done:
		select {
		case <-k.found: // printed before it exited
		default:
			return "", errors.New("vault exited before it printed its unseal key")
		}
	case <-ctx.Done():
		return "", ctx.Err()
	case <-t.C:
		return "", errors.New("vault dev server printed no \"Unseal Key:\" line")
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.key, nil
}
