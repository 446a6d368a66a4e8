package main

import (
	"crypto"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/statuspage"
	"github.com/tlsmint/tlsmint/storage"
)

// TestCertsShowStoredLastError: a Manager's renewal fails against the CA
// (down); certs list and show, which read the storage afresh, show that
// failure — the state failing, the error and when.
func TestCertsShowStoredLastError(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	t.Cleanup(func() { ca.SetDown(testpebble.Up) })
	dir := t.TempDir()
	const name = "fail.example.com"

	// A certificate in its renewal window (one day of its 80 left), which a
	// Manager renews at once.
	cert := selfSigned(t, name, time.Now().Add(-79*24*time.Hour), time.Now().Add(24*time.Hour))
	chainPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	if err := autotls.ImportCertificate(ctxT(t), storage.Dir(dir), autotls.ImportedCertificate{
		Directory: ca.DirectoryURL(), Name: name, ChainPEM: chainPEM, Key: cert.PrivateKey.(crypto.Signer),
	}); err != nil {
		t.Fatal(err)
	}
	var c statuspage.Certificate
	runCmd(t, nil, "certs", "show", name, "--storage", dir, "--json").ok(t).decode(t, &c)
	if c.LastError != "" || c.State == statuspage.StateFailing {
		t.Fatalf("before any renewal: %+v, want no error", c)
	}

	if err := ca.SetDown(testpebble.Down503); err != nil {
		t.Fatal(err)
	}
	failed := make(chan autotls.Event, 8)
	m := &autotls.Manager{
		Issuers: []autotls.Issuer{{DirectoryURL: ca.DirectoryURL()}}, HTTPClient: ca.HTTPClient(), Storage: storage.Dir(dir),
		Hosts: autotls.HostWhitelist(name), AcceptTOS: true, FailureBackoff: time.Hour,
		OnEvent: func(e autotls.Event) {
			if e.Type == autotls.EventFailed {
				select {
				case failed <- e:
				default:
				}
			}
		},
	}
	before := time.Now()
	if err := m.Manage(ctxT(t), name); err != nil {
		t.Fatalf("Manage of a stored certificate: %v", err)
	}
	var ev autotls.Event
	select {
	case ev = <-failed:
	case <-time.After(30 * time.Second):
		t.Fatal("no failed renewal within 30s")
	}
	m.Close()
	after := time.Now()

	runCmd(t, nil, "certs", "show", name, "--storage", dir, "--json").ok(t).decode(t, &c)
	if c.State != statuspage.StateFailing || c.LastError != ev.Err.Error() || c.LastErrorAt.Before(before) || c.LastErrorAt.After(after) {
		t.Errorf("certs show after the failed renewal: state %s, last error %q at %v; want failing, %q between %v and %v",
			c.State, c.LastError, c.LastErrorAt, ev.Err, before, after)
	}
	r := runCmd(t, nil, "certs", "show", name, "--storage", dir).ok(t)
	if !strings.Contains(r.stdout, "last error:") || !strings.Contains(r.stdout, "HTTP 503") {
		t.Errorf("certs show text lacks the last error:\n%s", r.stdout)
	}
	r = runCmd(t, nil, "certs", "list", "--storage", dir).ok(t)
	row := ""
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.HasPrefix(l, name+" ") {
			row = l
		}
	}
	if !strings.Contains(row, " failing ") || !strings.Contains(row, clip(ev.Err.Error(), 60)) {
		t.Errorf("certs list row %q, want failing and the error", row)
	}
}
