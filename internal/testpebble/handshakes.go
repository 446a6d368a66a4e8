package testpebble

import (
	"crypto/tls"
	"net"
	"time"
)

// ServeHandshakes accepts connections from ln until it is closed, completes
// each one's TLS handshake (bounded to ten seconds) and closes it. That is
// all Pebble's tls-alpn-01 validation needs, and all a test that only
// checks which certificate a server presents needs. Connections that are
// not TLS are closed at once.
func ServeHandshakes(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			tc, ok := c.(*tls.Conn)
			if !ok {
				return
			}
			_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
			_ = tc.Handshake()
		}()
	}
}
