package acme_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/interopenv"
	"github.com/tlsmint/tlsmint/internal/testsetup"
)

// TestInteropExternalCA runs the issuance flow against an ACME server other
// than the in-process Pebble, such as Caddy's acme_server (step-ca) or
// Pebble's own binary. It is skipped unless TLSMINT_INTEROP_DIRECTORY names
// the directory URL; TLSMINT_INTEROP_ROOTS is a PEM file of the roots its
// HTTPS server chains to, TLSMINT_INTEROP_NAMES two comma-separated names
// that the CA resolves to this machine, and TLSMINT_INTEROP_HTTP the
// address to answer http-01 on (default ":80"). docs/interop.md says how.
func TestInteropExternalCA(t *testing.T) {
	env := interopenv.Get(t)
	dir, names, roots, addr := env.Directory, env.Names, env.Roots, env.HTTPAddr
	s := &httpSolver{tokens: map[string]string{}}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	var logs testsetup.Buffer
	c := &acme.Client{DirectoryURL: dir, Key: newKey(t), RootCAs: roots, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	t.Cleanup(func() { t.Logf("client log:\n%s", logs.String()) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d, err := c.Directory(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("directory: newAuthz=%q renewalInfo=%q profiles=%v tos=%q eab=%v", d.NewAuthz, d.RenewalInfo, d.Meta.Profiles, d.Meta.TermsOfService, d.Meta.ExternalAccountRequired)
	if _, err := c.Register(ctx, acme.Account{TermsOfServiceAgreed: true}); err != nil {
		t.Fatalf("Register: %v", err)
	}
	cert, _, err := obtain(t, c, s, acme.DNSNames(names[0]), nil)
	if err != nil {
		t.Fatalf("Obtain(%s): %v", names[0], err)
	}
	v, f := c.PollTimings()
	t.Logf("obtained %s, %d chain(s); learned validation %v, finalization %v", cert.Leaf().DNSNames, len(cert.Chains), v, f)

	// A validation that fails must end quickly with the CA's problem.
	start := time.Now()
	_, _, err = obtain(t, c, s, acme.DNSNames(names[1]), func(r *acme.ObtainRequest) {
		r.Solvers = map[string]acme.Solver{acme.ChallengeHTTP01: noopSolver{}}
	})
	var p *acme.Problem
	if !errors.As(err, &p) || !errors.Is(err, acme.ErrAuthorizationInvalid) {
		t.Fatalf("failing Obtain: got %v, want ErrAuthorizationInvalid with the CA's problem", err)
	}
	t.Logf("failing validation ended after %v: %v", time.Since(start).Round(time.Millisecond), err)

	// A profile the CA does not offer is refused before any order.
	if len(d.Meta.Profiles) == 0 {
		_, err := c.NewOrder(ctx, acme.OrderRequest{Identifiers: acme.DNSNames(names[0]), Profile: "shortlived"})
		wantIs(t, err, acme.ErrInvalidProfile)
	}
}
