package testpebble

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/letsencrypt/pebble/v2/wfe"
)

// serve builds the handler chain and starts the HTTPS server on a free
// loopback port.
//
// The chain, outermost first: every request is counted and logged; Pebble's
// management paths go to the current backend's management handler;
// everything else meets the faults of [CA.SetDown] and [CA.RateLimit], then
// [Options.Wrap], then the current backend's ACME handler.
func (c *CA) serve() error {
	cert, leaf, err := newServerCert()
	if err != nil {
		return err
	}
	c.tlsRoots = x509.NewCertPool()
	c.tlsRoots.AddCert(leaf)
	c.serverTLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}

	var acmeHandler http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.cur.Load().serveACME(w, r)
	})
	if c.opts.Wrap != nil {
		acmeHandler = c.opts.Wrap(acmeHandler)
	}
	acmeHandler = c.faults(acmeHandler)
	c.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		endpoint := classify(r.URL.Path)
		c.counts.add(endpoint)
		seq := c.reqLog.add(Request{Time: time.Now(), Endpoint: endpoint, Method: r.Method, Path: r.URL.Path})
		sw := &statusWriter{ResponseWriter: w}
		defer func() { c.reqLog.finish(seq, sw.status()) }()
		if endpoint == "management" {
			c.cur.Load().management.ServeHTTP(sw, r)
			return
		}
		acmeHandler.ServeHTTP(sw, r)
	})

	c.srvMu.Lock()
	err = c.listenLocked()
	c.srvMu.Unlock()
	if err != nil {
		return err
	}
	c.dirURL = "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)) + wfe.DirectoryPath
	c.transport = &http.Transport{
		TLSClientConfig:       &tls.Config{RootCAs: c.tlsRoots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		IdleConnTimeout:       30 * time.Second,
		MaxIdleConnsPerHost:   16,
		ForceAttemptHTTP2:     true,
	}
	return nil
}

// listenLocked starts a new HTTPS server on c.port (a free port the first
// time, when c.port is 0). The caller holds c.srvMu and c.srv is nil.
func (c *CA) listenLocked() error {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port)))
	if err != nil {
		return fmt.Errorf("testpebble: listen: %w", err)
	}
	c.port = ln.Addr().(*net.TCPAddr).Port
	srv := &http.Server{
		Handler:           c.handler,
		TLSConfig:         c.serverTLS.Clone(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          c.logger,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ServeTLS(ln, "", "")
	}()
	c.srv, c.srvDone = srv, done
	return nil
}

// stopLocked closes the HTTPS server, its listener and every connection,
// and waits for its Serve to return; handlers still running finish on
// their own. With hold, the port is then reserved (see reserve) until the
// server listens again, so that no other socket takes it meanwhile. The
// caller holds c.srvMu.
func (c *CA) stopLocked(hold bool) error {
	if c.srv == nil {
		return nil
	}
	err := c.srv.Close()
	<-c.srvDone
	c.srv, c.srvDone = nil, nil
	if err != nil {
		return fmt.Errorf("testpebble: https server: %w", err)
	}
	if hold {
		// Best effort: should another socket take the port in this instant,
		// the next listenLocked reports it.
		if ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(c.port))); err == nil {
			_ = reserve(ln)
			_ = ln.Close()
		}
	}
	return nil
}

// statusWriter records the status code of a response.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// status is the code sent, once the handler has returned: net/http sends 200
// for a handler that wrote nothing.
func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}
