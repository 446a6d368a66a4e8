package main

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testsetup"
)

// TestRelayClientAuth: with client_auth, a tenant added with
// --client-name is usable only with that client certificate; without one
// registration is refused with unauthorized.
func TestRelayClientAuth(t *testing.T) {
	ca := testsetup.NewAuthority(t, "clients")
	dir := t.TempDir()
	rootsFile := filepath.Join(dir, "clients.pem")
	if err := os.WriteFile(rootsFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	clientCert := ca.Issue(t, &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "web-client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})

	e := newRelayEnv(t, func(cfg map[string]any) { cfg["client_auth"] = map[string]any{"ca_roots": rootsFile} })
	r := startRelay(t, e.cfgFile, e.env)
	runCmd(t, e.env, "relay", "tenant", "add", "web", "--admin", r.admin, "--name", "example.com", "--client-name", "web-client", "--validation-target", "127.0.0.0/8").ok(t)
	eab := mintEAB(t, e.env, "web", "--admin", r.admin)
	ctx := ctxT(t)

	without := e.client(t)
	if _, err := without.Register(ctx, acme.Account{TermsOfServiceAgreed: true, ExternalAccountBinding: eab}); !errors.Is(err, acme.ErrUnauthorized) {
		t.Fatalf("Register without a client certificate: %v, want unauthorized", err)
	}

	with := e.client(t)
	with.HTTPClient.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{clientCert}
	if _, err := with.Register(ctx, acme.Account{TermsOfServiceAgreed: true, ExternalAccountBinding: eab}); err != nil {
		t.Fatalf("Register with the client certificate: %v", err)
	}
	certKey := testsetup.Key(t)
	if _, err := with.Obtain(ctx, acme.ObtainRequest{
		Identifiers: acme.DNSNames("mtls.example.com"), CertKey: certKey,
		Solvers: map[string]acme.Solver{acme.ChallengeHTTP01: e.down},
	}); err != nil {
		t.Fatalf("Obtain with the client certificate: %v", err)
	}

	// The tenant's policy shows the binding.
	var ts []struct {
		ID     string `json:"id"`
		Policy struct {
			ClientNames []string `json:"client_names"`
		} `json:"policy"`
	}
	out := runCmd(t, e.env, "relay", "tenant", "list", "--admin", r.admin, "--json").ok(t)
	out.decode(t, &ts)
	if b, _ := json.Marshal(ts); len(ts) != 1 || len(ts[0].Policy.ClientNames) != 1 || ts[0].Policy.ClientNames[0] != "web-client" {
		t.Errorf("tenant list = %s, want web bound to web-client", b)
	}
}
