//go:build !linux

package childproc

import "os/exec"

// DieWithParent does nothing where the kernel cannot kill a child with its
// parent; the callers still stop their children on every normal exit path.
func DieWithParent(*exec.Cmd) {}
