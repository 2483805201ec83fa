package gateway

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
)

// CrashEnv names the environment variable that arms a crash point:
// "POINT" or "POINT:N" kills the process with SIGKILL the N-th time (default
// the first) execution passes POINT. It exists for the multi-process tests
// that prove nothing is lost or duplicated across a crash at the worst
// moment; it is read once at start and does nothing when unset. Points:
//
//	inbox-stored      receiver: alert and audit record committed, answer not sent
//	receipt-received  sender: valid receipt in hand, delivery not yet recorded
const CrashEnv = "BORDERLINK_CRASH_AT"

var crashPoints = map[string]bool{"inbox-stored": true, "receipt-received": true}

// CrashPoint is an armed crash point (nil: none).
type CrashPoint struct {
	name  string
	after int64
	seen  atomic.Int64
}

// ParseCrashPoint reads CrashEnv's value ("" gives nil).
func ParseCrashPoint(v string) (*CrashPoint, error) {
	if v == "" {
		return nil, nil
	}
	name, n, hasN := strings.Cut(v, ":")
	if !crashPoints[name] {
		return nil, fmt.Errorf("%s=%q: unknown crash point %q (known: inbox-stored, receipt-received)", CrashEnv, v, name)
	}
	cp := &CrashPoint{name: name, after: 1}
	if hasN {
		k, err := strconv.ParseInt(n, 10, 64)
		if err != nil || k < 1 {
			return nil, fmt.Errorf("%s=%q: the count after ':' must be a positive integer", CrashEnv, v)
		}
		cp.after = k
	}
	return cp, nil
}

// reach kills the process when name is the armed point and its count is
// reached. SIGKILL, not exit: no deferred function, no flush, no
// graceful anything.
func (c *CrashPoint) reach(name string) {
	if c == nil || c.name != name || c.seen.Add(1) != c.after {
		return
	}
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // the signal is on its way
}
