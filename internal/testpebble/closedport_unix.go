//go:build unix

package testpebble

import (
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// ClosedPort returns a loopback TCP port that refuses connections for the
// rest of the test: a socket is bound to it but never listens, so the port
// cannot be taken by another listener meanwhile (as a port freed by closing
// a listener can be, by a parallel test). The port is chosen below the
// system's ephemeral range, so that it is never one another test was
// handed by listening on port 0 and means to listen on again.
func ClosedPort(tb testing.TB) int {
	tb.Helper()
	low := ephemeralLow()
	for range 200 {
		p := 10000 + rand.IntN(max(low-10000, 1))
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
		if err != nil {
			tb.Fatalf("testpebble: socket: %v", err)
		}
		if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: p, Addr: [4]byte{127, 0, 0, 1}}); err != nil {
			syscall.Close(fd)
			continue // taken: try another
		}
		tb.Cleanup(func() { syscall.Close(fd) })
		return p
	}
	tb.Fatal("testpebble: no free port below the ephemeral range")
	return 0
}

// ephemeralLow returns the lowest port of the system's ephemeral range
// (Linux's default when it cannot be read).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 11000 {
				return n
			}
		}
	}
	return 32768
}
