package childproc

import (
	"os/exec"
	"syscall"
)

// DieWithParent has the kernel kill cmd's process (SIGKILL) if the process
// that started it dies without stopping it (kill -9, a crash), so no
// process is left behind. Call it before cmd.Start; it replaces
// cmd.SysProcAttr.
func DieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
