// Package interopenv reads the settings of the opt-in tests that run
// against an ACME server other than the in-process Pebble, such as Caddy's
// acme_server (docs/interop.md says how to run one).
package interopenv

import (
	"crypto/x509"
	"os"
	"strings"
	"testing"
)

// Env is an external CA and the names it resolves to this machine.
type Env struct {
	// Directory is the CA's directory URL (TLSMINT_INTEROP_DIRECTORY).
	Directory string
	// Roots are the roots its HTTPS server and its certificates chain
	// to (the PEM file TLSMINT_INTEROP_ROOTS; empty without it).
	Roots *x509.CertPool
	// Names are two or more names the CA resolves to this machine
	// (TLSMINT_INTEROP_NAMES, comma-separated).
	Names []string
	// HTTPAddr is where to answer http-01 (TLSMINT_INTEROP_HTTP,
	// default ":80").
	HTTPAddr string
}

// Get returns the settings, skipping tb when TLSMINT_INTEROP_DIRECTORY is
// not set and failing it when the others are unusable.
func Get(tb testing.TB) Env {
	tb.Helper()
	e := Env{Directory: os.Getenv("TLSMINT_INTEROP_DIRECTORY"), Roots: x509.NewCertPool(), HTTPAddr: Or("TLSMINT_INTEROP_HTTP", ":80")}
	if e.Directory == "" {
		tb.Skip("TLSMINT_INTEROP_DIRECTORY not set: no external ACME server to test against")
	}
	e.Names = strings.Split(os.Getenv("TLSMINT_INTEROP_NAMES"), ",")
	if len(e.Names) < 2 {
		tb.Fatal("TLSMINT_INTEROP_NAMES needs two names")
	}
	if f := os.Getenv("TLSMINT_INTEROP_ROOTS"); f != "" {
		pem, err := os.ReadFile(f)
		if err != nil || !e.Roots.AppendCertsFromPEM(pem) {
			tb.Fatalf("reading roots %s: %v", f, err)
		}
	}
	return e
}

// Or returns the environment variable key, or def when it is empty.
func Or(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
