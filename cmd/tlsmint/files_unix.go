//go:build unix

package main

import "syscall"

// openNonblock is or-ed into the flags of every file the command reads,
// so that opening a named pipe nobody writes to does not block (it then
// reads as empty); regular files are not affected.
const openNonblock = syscall.O_NONBLOCK
