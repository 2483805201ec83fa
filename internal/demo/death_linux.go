package demo

import (
	"os/exec"
	"syscall"
)

// setDeathSignal makes the kernel kill a gateway if the demo process dies
// without stopping it (kill -9, a crash), so no process is left behind.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
