package compat_test

import (
	"os/exec"
	"syscall"
)

// setParentDeath makes the kernel kill cmd when the test process dies,
// however it dies: a timed-out test leaves no ferry running.
func setParentDeath(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
