package relay

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/tlsmint/tlsmint/acme"
)

func badCSR(format string, args ...any) *acme.Problem {
	return problem(probBadCSR, http.StatusBadRequest, format, args...)
}

// keyType names a certificate public key with the Key* constants, or ""
// for a key no policy can allow.
func keyType(pub any) string {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return KeyP256
		case elliptic.P384():
			return KeyP384
		}
	case *rsa.PublicKey:
		if k.E != 65537 {
			return ""
		}
		switch k.N.BitLen() {
		case 2048:
			return KeyRSA2048
		case 3072:
			return KeyRSA3072
		case 4096:
			return KeyRSA4096
		}
	}
	return ""
}

// parseCSR decodes a finalize request's CSR and checks it against the
// order and the policy: a valid signature; a key of an allowed type that
// is no account's key; exactly the order's identifiers as subjectAltNames
// (DNS names and IP addresses, nothing else), and a common name, if any,
// that is one of them.
func (c *call) parseCSR(b64 string, o *orderRecord, pol *Policy) ([]byte, *acme.Problem) {
	der, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(b64, "="))
	if err != nil || len(der) == 0 {
		return nil, badCSR("the CSR is not base64url DER")
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, badCSR("the CSR does not parse: %s", clip(err.Error(), 200))
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, badCSR("the CSR's signature does not verify")
	}
	kt := keyType(csr.PublicKey)
	if kt == "" {
		return nil, badCSR("the CSR's key type is not supported (ECDSA P-256/P-384, RSA 2048/3072/4096 with e=65537)")
	}
	if !slices.Contains(pol.keyTypes(), kt) {
		return nil, badCSR("key type %s is not allowed for this account (allowed: %s)", kt, strings.Join(pol.keyTypes(), ", "))
	}
	tp, err := acme.Thumbprint(csr.PublicKey)
	if err != nil {
		return nil, badCSR("the CSR's key has no thumbprint")
	}
	if other, err := c.accountByThumbprint(tp); err != nil {
		return nil, c.storageFailed(err)
	} else if other != nil || (c.acct != nil && c.acct.Thumbprint == tp) {
		return nil, badCSR("the certificate key must not be an account key")
	}
	if len(csr.EmailAddresses) > 0 || len(csr.URIs) > 0 {
		return nil, badCSR("the CSR must not have e-mail or URI names")
	}
	var got []string
	for _, n := range csr.DNSNames {
		got = append(got, "dns:"+strings.ToLower(n))
	}
	for _, ip := range csr.IPAddresses {
		a, ok := netip.AddrFromSlice(ip)
		if !ok {
			return nil, badCSR("the CSR has a malformed IP address")
		}
		got = append(got, "ip:"+a.Unmap().String())
	}
	if cn := strings.ToLower(csr.Subject.CommonName); cn != "" && !slices.Contains(got, "dns:"+cn) && !slices.Contains(got, "ip:"+cn) {
		return nil, badCSR("the CSR's common name %q is not one of its names", clip(cn, 64))
	}
	want := make([]string, 0, len(o.Identifiers))
	for _, id := range o.Identifiers {
		want = append(want, id.Type+":"+id.Value)
	}
	slices.Sort(got)
	got = slices.Compact(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		var extra, missing []string
		for _, g := range got {
			if !slices.Contains(want, g) {
				extra = append(extra, g)
			}
		}
		for _, w := range want {
			if !slices.Contains(got, w) {
				missing = append(missing, w)
			}
		}
		return nil, badCSR("the CSR's names differ from the order's: extra %s, missing %s", clip(strings.Join(extra, ", "), 300), clip(strings.Join(missing, ", "), 300))
	}
	return der, nil
}
