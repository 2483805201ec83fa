//go:build !linux

package demo

import "os/exec"

// setDeathSignal has no portable equivalent outside Linux; the demo still
// stops its gateways on every normal exit path.
func setDeathSignal(*exec.Cmd) {}
