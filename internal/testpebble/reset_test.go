package testpebble

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/tlsmint/tlsmint/acme"
)

func TestReset(t *testing.T) {
	t.Parallel()
	c := newCA(t, Options{AlwaysValid: true, EABKeys: map[string]string{"kid-1": "c2VjcmV0"}})
	ctx := testCtx(t)
	cl := newClient(t, c)
	oldAcct, err := cl.LookupAccount(ctx)
	if err != nil {
		t.Fatal(err)
	}
	oldLeaf := obtain(t, c, cl, acme.DNSNames("reset.example.test"), acme.ChallengeHTTP01, nil)[0]
	if err := c.AddEABKey("kid-2", "c2VjcmV0Mg"); err != nil {
		t.Fatal(err)
	}
	base := strings.TrimSuffix(c.DirectoryURL(), "/dir")
	dirURL, roots, pool := c.DirectoryURL(), c.Roots(), c.RootPool()
	_, root0 := get(t, c, http.MethodGet, base+"/roots/0")
	orders := c.Requests("newOrder")

	for i := range 2 { // a second Reset works as the first
		if err := c.Reset(); err != nil {
			t.Fatalf("Reset %d: %v", i, err)
		}
	}

	// The account is forgotten, whatever the client asks.
	if err := newOrder(t, cl); !errors.Is(err, acme.ErrAccountDoesNotExist) {
		t.Errorf("NewOrder with the old account: got %v, want accountDoesNotExist", err)
	}
	if _, err := cl.LookupAccount(ctx); !errors.Is(err, acme.ErrAccountDoesNotExist) {
		t.Errorf("LookupAccount of the old key: got %v, want accountDoesNotExist", err)
	}
	// So is the certificate.
	if err := c.Revoke(oldLeaf, 0); err == nil {
		t.Errorf("Revoke of a certificate issued before Reset: got nil, want an error")
	}
	if resp, _ := get(t, c, http.MethodGet, base+"/cert-status-by-serial/"+oldLeaf.SerialNumber.Text(16)); resp.StatusCode != http.StatusNotFound {
		t.Errorf("status of a certificate issued before Reset: got HTTP %d, want 404", resp.StatusCode)
	}

	// The same key registers a new account, which obtains a certificate
	// under the same roots.
	newAcct, err := cl.Register(ctx, acme.Account{TermsOfServiceAgreed: true})
	if err != nil {
		t.Fatalf("Register after Reset: %v", err)
	}
	if newAcct.URL == oldAcct.URL {
		t.Errorf("account URL after Reset: got the old %q, want a new one", newAcct.URL)
	}
	chain := obtain(t, c, cl, acme.DNSNames("reset.example.test"), acme.ChallengeHTTP01, nil)
	opts := x509VerifyOptions(c)
	opts.Roots = pool
	for _, ic := range chain[1:] {
		opts.Intermediates.AddCert(ic)
	}
	if _, err := chain[0].Verify(opts); err != nil {
		t.Errorf("certificate issued after Reset against the roots from before: %v", err)
	}

	// What stays.
	if got := c.DirectoryURL(); got != dirURL {
		t.Errorf("DirectoryURL: got %q, want %q", got, dirURL)
	}
	if got := c.Roots(); len(got) != len(roots) || !got[0].Equal(roots[0]) {
		t.Errorf("Roots changed across Reset")
	}
	if _, got := get(t, c, http.MethodGet, base+"/roots/0"); !bytes.Equal(got, root0) {
		t.Errorf("/roots/0 changed across Reset")
	}
	for _, kid := range []string{"kid-1", "kid-2"} {
		if err := c.AddEABKey(kid, "c2VjcmV0"); err == nil {
			t.Errorf("AddEABKey(%q) after Reset: got nil, want an error (the key was kept)", kid)
		}
	}
	if got := c.Requests("newOrder"); got <= orders {
		t.Errorf("Requests(newOrder): got %d, want more than the %d from before Reset", got, orders)
	}
}
