//go:build unix

package testpebble_test

import (
	"errors"
	"net"
	"strconv"
	"syscall"
	"testing"

	"github.com/tlsmint/tlsmint/internal/testpebble"
)

func TestClosedPortRefuses(t *testing.T) {
	p := testpebble.ClosedPort(t)
	_, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial of the closed port: %v, want connection refused", err)
	}
	// The port stays taken: a listener cannot have it.
	if ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))); err == nil {
		ln.Close()
		t.Fatal("a listener took the closed port")
	}
}
