//go:build !linux

package bench

import "os/exec"

// setDeathSignal does nothing where the kernel cannot kill a child with
// its parent; the scenario stops the server itself.
func setDeathSignal(*exec.Cmd) {}
