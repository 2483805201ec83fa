package policy_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/borderlink/borderlink/internal/policy"
	"github.com/borderlink/borderlink/policies"
)

func TestWatchReloadsAndKeepsOldSetOnError(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "agreements"), 0o755)
	rego, _ := policies.FS.ReadFile("exchange.rego")
	agreement, _ := policies.FS.ReadFile("agreements/nl-sg-risk-2026.yaml")
	os.WriteFile(filepath.Join(dir, "exchange.rego"), rego, 0o644)
	file := filepath.Join(dir, "agreements", "a.yaml")
	os.WriteFile(file, agreement, 0o644)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e, err := policy.NewEngine(ctx, "nl.customs.example", os.DirFS(dir), nil)
	if err != nil {
		t.Fatal(err)
	}
	first := e.Revision()
	done := make(chan error, 1)
	go func() { done <- e.Watch(ctx, dir, 20*time.Millisecond, nil) }()

	waitFor := func(what string, ok func(policy.Status) bool) policy.Status {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			if st := e.Status(); ok(st) {
				return st
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatalf("timed out waiting for %s; status %+v", what, e.Status())
		return policy.Status{}
	}

	// The watcher may not have registered yet when the file is first
	// written: write it again until a reload is seen.
	suspended := []byte(strings.Replace(string(agreement), "status: active", "status: suspended", 1))
	var last time.Time
	second := waitFor("reload after edit", func(st policy.Status) bool {
		if st.Revision != first {
			return true
		}
		if time.Since(last) > 250*time.Millisecond {
			os.WriteFile(file, suspended, 0o644)
			last = time.Now()
		}
		return false
	}).Revision

	// Replace the whole agreements directory, as a deployment would: later
	// edits in the new directory must still be seen.
	os.RemoveAll(filepath.Join(dir, "agreements"))
	os.MkdirAll(filepath.Join(dir, "agreements"), 0o755)
	os.WriteFile(file, agreement, 0o644)
	waitFor("reload after the directory was replaced", func(st policy.Status) bool { return st.Revision == first })
	time.Sleep(100 * time.Millisecond)
	os.WriteFile(file, []byte(strings.Replace(string(agreement), "status: active", "status: suspended", 1)), 0o644)
	waitFor("reload after an edit in the new directory", func(st policy.Status) bool { return st.Revision == second })

	os.WriteFile(file, []byte("id: broken\nunknown_key: 1\n"), 0o644)
	st := waitFor("failed reload", func(st policy.Status) bool { return st.LastError != "" })
	if st.Revision != second || e.Revision() != second {
		t.Errorf("revision after a broken edit = %s (engine %s), want the previous %s", st.Revision, e.Revision(), second)
	}
	if !strings.Contains(st.LastError, "agreements/a.yaml") {
		t.Errorf("last error %q does not name the file", st.LastError)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Watch returned %v", err)
	}
}
