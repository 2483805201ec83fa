package bench

import (
	"os/exec"
	"syscall"
)

// setDeathSignal has the kernel kill a child (the Vault dev server) if the
// bench process dies without stopping it.
func setDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
