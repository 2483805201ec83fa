package policy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultSettle is how long Watch waits after the last change before it
// reloads, so that an editor's save or a `git pull` touching many files
// leads to one reload of the finished state, not several of a half-written
// one.
const DefaultSettle = 300 * time.Millisecond

// Watch reloads the policy set from dir whenever a file in dir or
// dir/agreements changes, or when reload receives a value (SIGHUP), until
// ctx is done. A set that fails to compile is logged and recorded in
// Status; the previous set stays in force.
func (e *Engine) Watch(ctx context.Context, dir string, settle time.Duration, reload <-chan os.Signal) error {
	if settle <= 0 {
		settle = DefaultSettle
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch policy dir %s: %w", dir, err)
	}
	defer w.Close()
	agreements := filepath.Join(dir, "agreements")
	for _, d := range []string{dir, agreements} {
		if err := w.Add(d); err != nil {
			return fmt.Errorf("watch policy dir %s: %w", d, err)
		}
	}
	var (
		timer   *time.Timer
		timeout <-chan time.Time
		// first is when the pending burst of changes began: a steady
		// stream of events must not postpone the reload for ever.
		first time.Time
	)
	do := func(why string) {
		if err := e.Reload(ctx, os.DirFS(dir)); err != nil {
			e.logger.Error("policy reload failed; keeping the current policy", "dir", dir, "trigger", why, "revision", e.Revision(), "error", err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			e.logger.Debug("policy file changed", "file", ev.Name, "op", ev.Op.String())
			if filepath.Clean(ev.Name) == agreements && ev.Op.Has(fsnotify.Create) {
				// The directory was replaced (rm -rf + copy, a rename, a
				// checkout): the old watch died with the old directory.
				if err := w.Add(agreements); err != nil {
					e.logger.Warn("cannot watch the new agreements directory; reload with SIGHUP", "dir", agreements, "error", err)
				}
			}
			if timeout == nil {
				first = time.Now()
			}
			wait := settle
			if time.Since(first) > 10*settle {
				wait = 0
			}
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Stop()
				timer.Reset(wait)
			}
			timeout = timer.C
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			e.logger.Warn("policy watcher error", "dir", dir, "error", err)
		case <-timeout:
			timeout = nil
			do("file change")
		case <-reload:
			do("SIGHUP")
		}
	}
}
