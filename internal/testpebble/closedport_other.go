//go:build !unix

package testpebble

import (
	"net"
	"testing"
)

// ClosedPort returns a loopback TCP port nothing listens on. On this
// platform the port is freed by closing a listener, so another listener
// may take it meanwhile.
func ClosedPort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return p
}
