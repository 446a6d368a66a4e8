package relay_test

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"strconv"
	"testing"
	"time"

	legoacme "github.com/go-acme/lego/v5/acme"
	"github.com/go-acme/lego/v5/certcrypto"
	"github.com/go-acme/lego/v5/certificate"
	"github.com/go-acme/lego/v5/challenge/http01"
	"github.com/go-acme/lego/v5/lego"
	legolog "github.com/go-acme/lego/v5/log"
	"github.com/go-acme/lego/v5/registration"
	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/relay"
)

// legoUser is lego's view of an account.
type legoUser struct {
	key crypto.Signer
	reg *legoacme.ExtendedAccount
}

func (u *legoUser) GetEmail() string                           { return "lego@example.com" }
func (u *legoUser) GetRegistration() *legoacme.ExtendedAccount { return u.reg }
func (u *legoUser) GetPrivateKey() crypto.Signer               { return u.key }

// TestLego runs lego — a client no one in this project wrote — through
// the relay: it registers with EAB, obtains via http-01 validated by the
// relay, reads renewalInfo, renews with replaces and revokes.
func TestLego(t *testing.T) {
	t.Parallel()
	legolog.SetDefault(slog.New(slog.DiscardHandler)) // lego's own global logger
	port := freePort(t)
	e := newEnv(t, envOptions{modify: func(s *relay.Server) { s.Validator.HTTPPort = port }})
	eab := e.tenant(t, "lego", examplePolicy())
	ctx := ctxT(t)
	user := &legoUser{key: newKey(t)}
	cfg := lego.NewConfig(user)
	cfg.CADirURL = e.dirURL()
	cfg.HTTPClient = e.ts.Client()
	cfg.Certificate.Timeout = 30 * time.Second
	client, err := lego.NewClient(cfg)
	if err != nil {
		t.Fatalf("lego.NewClient: %v", err)
	}
	if err := client.Challenge.SetHTTP01Provider(http01.NewProviderServer("127.0.0.1", strconv.Itoa(port))); err != nil {
		t.Fatal(err)
	}
	reg, err := client.Registration.RegisterWithExternalAccountBinding(ctx, registration.RegisterEABOptions{
		TermsOfServiceAgreed: true, Kid: eab.KeyID, HmacEncoded: b64.EncodeToString(eab.HMACKey),
	})
	if err != nil {
		t.Fatalf("lego EAB registration: %v", err)
	}
	user.reg = reg

	res, err := client.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"lego.example.com", "www.lego.example.com"}, Bundle: true, KeyType: certcrypto.EC256})
	if err != nil {
		t.Fatalf("lego Obtain: %v", err)
	}
	leaf := firstCert(t, res.Certificate)
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "www.lego.example.com", Roots: e.ca.RootPool(), Intermediates: poolOf(t, res.Certificate)}); err != nil {
		t.Fatalf("lego's certificate does not verify: %v", err)
	}

	ri, err := client.Certificate.GetRenewalInfo(ctx, leaf)
	if err != nil {
		t.Fatalf("lego GetRenewalInfo: %v", err)
	}
	if ri.SuggestedWindow.Start.IsZero() || !ri.SuggestedWindow.End.After(ri.SuggestedWindow.Start) {
		t.Fatalf("lego renewal info = %+v", ri.SuggestedWindow)
	}

	renewed, err := client.Certificate.Renew(ctx, *res, &certificate.RenewOptions{Bundle: true, UseARICertID: true, KeyType: certcrypto.EC256})
	if err != nil {
		t.Fatalf("lego Renew: %v", err)
	}
	id, _ := acme.CertificateID(leaf)
	if replaced := e.orderReplacing(t, id); !replaced {
		t.Fatalf("lego's renewal did not name %s in replaces", id)
	}
	newLeaf := firstCert(t, renewed.Certificate)
	if newLeaf.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
		t.Fatal("renewal returned the same certificate")
	}

	if err := client.Certificate.Revoke(ctx, renewed.Certificate); err != nil {
		t.Fatalf("lego Revoke: %v", err)
	}
	if err := e.ca.Revoke(newLeaf, 0); err == nil {
		t.Fatal("lego's revocation did not reach Pebble")
	}
	// lego refuses nothing locally for a name the tenant may not have: the
	// relay does, with rejectedIdentifier, before anything goes upstream.
	before := e.ca.Requests("newOrder")
	_, err = client.Certificate.Obtain(ctx, certificate.ObtainRequest{Domains: []string{"lego.example.org"}, KeyType: certcrypto.EC256})
	var pd *legoacme.ProblemDetails
	if !errors.As(err, &pd) || pd.Type != acme.ErrRejectedIdentifier.Type {
		t.Fatalf("lego Obtain outside the policy: %v, want rejectedIdentifier", err)
	}
	if e.ca.Requests("newOrder") != before {
		t.Fatal("a refused order reached Pebble")
	}
}

// orderReplacing reports whether some order of the relay named id in
// replaces.
func (e *env) orderReplacing(t *testing.T, id string) bool {
	t.Helper()
	keys, err := e.store.List(ctxT(t), "relay/orders/")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		b, err := e.store.Load(ctxT(t), k)
		if err == nil && containsJSON(b, `"replaces":"`+id+`"`) {
			return true
		}
	}
	return false
}

func containsJSON(b []byte, s string) bool { return hasWord(string(b), s) }

// firstCert parses the first certificate of a PEM bundle.
func firstCert(t testing.TB, bundle []byte) *x509.Certificate {
	t.Helper()
	b, _ := pem.Decode(bundle)
	if b == nil {
		t.Fatal("no PEM certificate")
	}
	return mustParse(t, b.Bytes)
}

func poolOf(t *testing.T, bundle []byte) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	p.AppendCertsFromPEM(bundle)
	return p
}
