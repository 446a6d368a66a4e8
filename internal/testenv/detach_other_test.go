//go:build !unix

package testenv

import "os/exec"

// detach does nothing where there is no /dev/tty for the child to find.
func detach(*exec.Cmd) {}
