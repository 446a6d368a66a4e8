package main

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/tlsmint/tlsmint/audit"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/storage"
)

// hostile is text a CA, a served certificate or a storage may carry: a
// terminal title change (OSC), a clear screen (CSI), the 8-bit CSI (C1),
// a bell, a right-to-left override, a tag character, invalid UTF-8, and a tab and a newline
// that would break a table's columns and rows.
const hostile = "\x1b]0;owned\x07\x1b[2J\u009b31m\u202eevil\U000e0041\xff\tcol\nrow"

// checkTerminalSafe fails the test if out holds a control character other
// than the newlines ending its lines, a format character or invalid UTF-8.
func checkTerminalSafe(t *testing.T, what, out string) {
	t.Helper()
	for i, r := range out {
		if r == '\n' {
			continue
		}
		if r == unicode.ReplacementChar && strings.HasPrefix(out[i:], "\xff") || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			t.Errorf("%s: unescaped %q at byte %d of:\n%s", what, r, i, out)
			return
		}
	}
}

func TestTermSafe(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"example.com", "example.com"},
		{"Bücher — ok", "Bücher — ok"},
		{hostile, `\x1b]0;owned\x07\x1b[2J\u009b31m\u202eevil\U000e0041\xff\tcol\nrow`},
		{"", ""},
	} {
		if got := termSafe(tc.in); got != tc.want {
			t.Errorf("termSafe(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestCheckHostileCertificate: a server whose certificate's names carry
// terminal escapes cannot drive the operator's terminal through check.
func TestCheckHostileCertificate(t *testing.T) {
	t.Parallel()
	addr := testsetup.ServeCertificate(t, testsetup.SelfSigned(t, &x509.Certificate{SerialNumber: big.NewInt(9),
		Subject:   pkix.Name{CommonName: "\x1b]0;owned\x07\u202eevil"},
		DNSNames:  []string{"\x1b[2J.example.com"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}))
	r := runCmd(t, nil, "check", addr, "--sni", "hostile.example.com")
	if r.code != exitProblem || !strings.Contains(r.stdout, `\x1b[2J.example.com`) || !strings.Contains(r.stdout, `\x1b]0;owned\x07\u202eevil`) {
		t.Errorf("check of a hostile certificate: exit %d, stdout:\n%s", r.code, r.stdout)
	}
	checkTerminalSafe(t, "check", r.stdout)
}

// TestAuditAndCertsHostileText: records and stored certificates whose text
// carries terminal escapes are printed escaped by audit and certs list;
// audit --json keeps the text, with C1 and format characters escaped.
func TestAuditAndCertsHostileText(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	store := storage.Dir(dir)
	log := &audit.Log{Storage: store, Node: "web-1"}
	log.Add(record.Audit{Kind: record.KindProbe, Operation: "probe", Outcome: record.OutcomeFailure,
		Target: "127.0.0.1:443", Names: []string{"a.example.com" + hostile}, Problem: "name_mismatch", Detail: hostile})
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	r := runCmd(t, nil, "audit", "--storage", dir).ok(t)
	if !strings.Contains(r.stdout, `\x1b]0;owned`) {
		t.Errorf("audit lacks the escaped detail:\n%s", r.stdout)
	}
	checkTerminalSafe(t, "audit", r.stdout)
	var recs []record.Audit
	r = runCmd(t, nil, "audit", "--storage", dir, "--json").ok(t)
	r.decode(t, &recs)
	if len(recs) != 1 || !strings.HasPrefix(recs[0].Detail, "\x1b]0;owned\x07\x1b[2J\u009b31m\u202eevil") {
		t.Errorf("audit --json: %+v, want the detail as recorded", recs)
	}
	checkTerminalSafe(t, "audit --json", r.stdout)

	// A stored certificate, and a value beside it whose key (a name no
	// certificate covers) holds a C1 control and a right-to-left override.
	const name = "ok.example.com"
	cert := selfSigned(t, name, time.Now().Add(-time.Hour), time.Now().Add(30*24*time.Hour))
	if err := autotls.ImportCertificate(ctxT(t), store, autotls.ImportedCertificate{
		Directory: "https://ca.test/directory", Name: name,
		ChainPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), Key: cert.PrivateKey.(crypto.Signer),
	}); err != nil {
		t.Fatal(err)
	}
	keys, err := store.List(ctxT(t), "certificates/")
	if err != nil || len(keys) != 1 {
		t.Fatalf("stored keys %v, %v", keys, err)
	}
	b, err := store.Load(ctxT(t), keys[0])
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.TrimSuffix(keys[0], name+".json") + "x\u009b2J\u202e.example.com.json"
	if err := store.Store(ctxT(t), bad, b); err != nil {
		t.Fatal(err)
	}
	r = runCmd(t, nil, "certs", "list", "--storage", dir).ok(t)
	if !strings.Contains(r.stdout, `x\u009b2J\u202e.example.com`) {
		t.Errorf("certs list lacks the escaped name:\n%s", r.stdout)
	}
	checkTerminalSafe(t, "certs list", r.stdout)
}
