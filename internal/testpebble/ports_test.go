package testpebble

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestPickedPortsReserved: a picked port is held (by a socket in TIME_WAIT
// that only SO_REUSEADDR listeners may share) from the moment New returns
// until the test listens on it, so no other socket on the machine can take
// it in between; and the test's own Listen still succeeds.
func TestPickedPortsReserved(t *testing.T) {
	t.Parallel()
	c := newCA(t, Options{})
	for _, tt := range []struct {
		name string
		port int
	}{
		{"HTTPPort", c.HTTPPort()},
		{"TLSPort", c.TLSPort()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			states, err := loopbackSocketStates(tt.port)
			if os.IsNotExist(err) {
				t.Skip("no /proc/net/tcp on this system")
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(states, func(s string) bool { return s == tcpTimeWait || s == tcpFinWait2 }) {
				t.Errorf("sockets on 127.0.0.1:%d after New: got states %v, want one in TIME_WAIT (%s) or FIN_WAIT2 (%s)", tt.port, states, tcpTimeWait, tcpFinWait2)
			}
			ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(tt.port)))
			if err != nil {
				t.Fatalf("Listen on the reserved port: got %v, want nil", err)
			}
			ln.Close()
		})
	}
}

// Socket states as /proc/net/tcp writes them.
const (
	tcpFinWait2 = "05"
	tcpTimeWait = "06"
)

// loopbackSocketStates returns the states of the TCP sockets whose local
// address is 127.0.0.1:port.
func loopbackSocketStates(port int) ([]string, error) {
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	local := fmt.Sprintf("0100007F:%04X", port)
	var states []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 3 && fields[1] == local {
			states = append(states, fields[3])
		}
	}
	return states, sc.Err()
}
