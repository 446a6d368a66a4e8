package acme_test

import (
	"bytes"
	"crypto/x509"
	"encoding/hex"
	"io"
	"math/big"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
)

func TestCertificateIDRFCExample(t *testing.T) {
	t.Parallel()
	// RFC 9773, section 4.1: AKI 69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4
	// and serial 00:87:65:43:21 give "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE".
	aki, _ := hex.DecodeString("69885B6B87464041E1B37B847BA0AE2CDE01C8D4")
	serial, _ := new(big.Int).SetString("8765432100", 16)
	serial.Rsh(serial, 8) // 0x87654321
	cert := &x509.Certificate{AuthorityKeyId: aki, SerialNumber: serial}
	got, err := acme.CertificateID(cert)
	if err != nil {
		t.Fatal(err)
	}
	if want := "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"; got != want {
		t.Fatalf("CertificateID = %q, want %q", got, want)
	}
	if _, err := acme.CertificateID(&x509.Certificate{SerialNumber: serial}); err == nil {
		t.Fatal("CertificateID without AKI succeeded")
	}
}

func TestRevokeAndRenewalInfo(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	s := newHTTPSolver(t, ca)
	c := registered(t, ca)
	ctx := ctxT(t)

	// Revocation by the account key; ARI then says "renew now".
	cert := mustObtain(t, c, s, "revoke1.example.com")
	ri, err := c.RenewalInfo(ctx, cert.Leaf())
	if err != nil {
		t.Fatalf("RenewalInfo: %v", err)
	}
	if !ri.SuggestedWindow.Start.After(time.Now()) {
		t.Fatalf("fresh certificate's window starts %v, want in the future", ri.SuggestedWindow.Start)
	}
	if ri.RetryAfter <= 0 {
		t.Fatalf("RetryAfter = %v, want the CA's Retry-After", ri.RetryAfter)
	}
	if err := c.RevokeCertificate(ctx, cert.Leaf().Raw, nil, acme.ReasonSuperseded); err != nil {
		t.Fatalf("revoke by account key: %v", err)
	}
	ri, err = c.RenewalInfo(ctx, cert.Leaf())
	if err != nil {
		t.Fatal(err)
	}
	if ri.SuggestedWindow.End.After(time.Now().Add(time.Minute)) {
		t.Fatalf("revoked certificate's window ends %v, want now or in the past", ri.SuggestedWindow.End)
	}
	// Revoking twice is an alreadyRevoked problem.
	err = c.RevokeCertificate(ctx, cert.Leaf().Raw, nil, acme.ReasonSuperseded)
	wantIs(t, err, acme.ErrAlreadyRevoked)

	// Revocation by the certificate's own key, from a client without an account.
	cert2, key2, err := obtain(t, c, s, acme.DNSNames("revoke2.example.com"), nil)
	if err != nil {
		t.Fatal(err)
	}
	anon := newClient(t, ca)
	if err := anon.RevokeCertificate(ctx, cert2.Leaf().Raw, key2, acme.ReasonKeyCompromise); err != nil {
		t.Fatalf("revoke by certificate key: %v", err)
	}
	// A stranger's key cannot revoke.
	cert3 := mustObtain(t, c, s, "revoke3.example.com")
	err = anon.RevokeCertificate(ctx, cert3.Leaf().Raw, newKey(t), acme.ReasonKeyCompromise)
	wantIs(t, err, acme.ErrUnauthorized)
}

func TestRenewalInfoSetByCA(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	s := newHTTPSolver(t, ca)
	c := registered(t, ca)
	cert := mustObtain(t, c, s, "ari.example.com")
	start := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	end := start.Add(2 * time.Hour)
	if err := ca.SetRenewalInfo(cert.Leaf(), start, end, "https://example.com/incident"); err != nil {
		t.Fatal(err)
	}
	ri, err := c.RenewalInfo(ctxT(t), cert.Leaf())
	if err != nil {
		t.Fatal(err)
	}
	if !ri.SuggestedWindow.Start.Equal(start) || !ri.SuggestedWindow.End.Equal(end) || ri.ExplanationURL != "https://example.com/incident" {
		t.Fatalf("renewal info = %+v, want %v–%v with explanation", ri, start, end)
	}
}

// TestAlreadyReplacedRecovery: a replacing order works against Pebble; a CA
// that refuses replaces with alreadyReplaced is simulated by the fault
// hook, since Pebble sets "replaced" from a goroutine without a lock and
// reading it races (see docs/interop.md).
func TestAlreadyReplacedRecovery(t *testing.T) {
	t.Parallel()
	var refuse atomic.Bool
	ca := faultCA(t, func(w http.ResponseWriter, r *http.Request) bool {
		if !refuse.Load() || r.URL.Path != "/order-plz" {
			return false
		}
		payload := jwsPayload(r)
		if !bytes.Contains(payload, []byte(`"replaces"`)) {
			return false
		}
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusConflict)
		io.WriteString(w, `{"type":"urn:ietf:params:acme:error:alreadyReplaced","detail":"already has a replacement order","status":409}`)
		return true
	})
	s := newHTTPSolver(t, ca)
	c := registered(t, ca)
	first := mustObtain(t, c, s, "replace.example.com")
	id, err := acme.CertificateID(first.Leaf())
	if err != nil {
		t.Fatal(err)
	}
	second, _, err := obtain(t, c, s, acme.DNSNames("replace.example.com"), func(r *acme.ObtainRequest) { r.Replaces = id })
	if err != nil {
		t.Fatalf("replacing order: %v", err)
	}
	if second.Order.Replaces != id {
		t.Fatalf("order replaces %q, want %q", second.Order.Replaces, id)
	}
	refuse.Store(true)
	// The low-level call reports alreadyReplaced…
	_, err = c.NewOrder(ctxT(t), acme.OrderRequest{Identifiers: acme.DNSNames("replace.example.com"), Replaces: id})
	wantIs(t, err, acme.ErrAlreadyReplaced)
	// …and Obtain recovers by ordering once more without replaces.
	before := ca.Requests("newOrder")
	third, _, err := obtain(t, c, s, acme.DNSNames("replace.example.com"), func(r *acme.ObtainRequest) { r.Replaces = id })
	if err != nil {
		t.Fatalf("Obtain after alreadyReplaced: %v", err)
	}
	if third.Order.Replaces != "" {
		t.Fatalf("recovered order still replaces %q", third.Order.Replaces)
	}
	if got := ca.Requests("newOrder") - before; got != 2 {
		t.Fatalf("%d newOrder requests, want 2 (refused, then without replaces)", got)
	}
}

func TestLowLevelFlow(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	s := newHTTPSolver(t, ca)
	c := registered(t, ca)
	ctx := ctxT(t)
	order, err := c.NewOrder(ctx, acme.OrderRequest{Identifiers: acme.DNSNames("low.example.com")})
	if err != nil {
		t.Fatal(err)
	}
	if order.Status != acme.StatusPending || len(order.Authorizations) != 1 || order.URL == "" {
		t.Fatalf("new order = %+v", order)
	}
	authz, err := c.GetAuthorization(ctx, order.Authorizations[0])
	if err != nil {
		t.Fatal(err)
	}
	var ch acme.Challenge
	types := map[string]bool{}
	for _, x := range authz.Challenges {
		types[x.Type] = true
		if x.Type == acme.ChallengeHTTP01 {
			ch = x
		}
	}
	if !types["http-01"] || !types["dns-01"] || !types["tls-alpn-01"] {
		t.Fatalf("challenge types = %v", types)
	}
	thumb, _ := acme.Thumbprint(c.Key.Public())
	if ch.KeyAuthorization != ch.Token+"."+thumb || strings.Count(ch.KeyAuthorization, ".") != 1 {
		t.Fatalf("key authorization %q, want token.thumbprint", ch.KeyAuthorization)
	}
	s.Present(ctx, ch)
	if _, err := c.AcceptChallenge(ctx, ch); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitAuthorization(ctx, authz.URL); err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	csr, err := acme.CSR(key, order.Identifiers)
	if err != nil {
		t.Fatal(err)
	}
	order, err = c.FinalizeOrder(ctx, order, csr)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.GetOrder(ctx, order.URL)
	if err != nil || got.Status != acme.StatusValid || got.Certificate == "" {
		t.Fatalf("GetOrder = %+v, %v", got, err)
	}
	chains, err := c.FetchCertificate(ctx, order.Certificate)
	if err != nil || len(chains) == 0 || chains[0].Leaf().DNSNames[0] != "low.example.com" {
		t.Fatalf("FetchCertificate = %v, %v", chains, err)
	}
	// Deactivating an authorization.
	order2, _ := c.NewOrder(ctx, acme.OrderRequest{Identifiers: acme.DNSNames("deact.example.com")})
	a2, _ := c.GetAuthorization(ctx, order2.Authorizations[0])
	a2, err = c.DeactivateAuthorization(ctx, a2)
	if err != nil || a2.Status != acme.StatusDeactivated {
		t.Fatalf("DeactivateAuthorization = %+v, %v", a2, err)
	}
}
