//go:build unix

package testenv

import (
	"os/exec"
	"syscall"
)

// detach runs cmd in a session of its own, without the controlling
// terminal of go test: the child's summary then cannot go to /dev/tty,
// as it would for a developer running the tests from a terminal.
func detach(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} }
