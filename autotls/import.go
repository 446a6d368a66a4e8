package autotls

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tlsmint/tlsmint/storage"
)

// ErrInvalidImport is returned (wrapped, with the reason) by
// ImportCertificate for a certificate that a Manager could not serve: no
// chain, a key that does not match the leaf, a leaf that does not cover
// the name, an invalid name or directory.
var ErrInvalidImport = errors.New("autotls: certificate cannot be imported")

// ErrNewerStored is returned (wrapped) by ImportCertificate when storage
// already holds a certificate for the name from the same directory that
// expires no earlier than the one given, unless Replace is set: the
// stored one is kept.
var ErrNewerStored = errors.New("autotls: a certificate that expires no earlier is already stored")

// ImportedCertificate is a certificate obtained elsewhere — by another
// ACME client, by the tlsmint command — to be stored where a Manager
// finds it (see ImportCertificate).
type ImportedCertificate struct {
	// Directory is the ACME directory URL of the CA that issued it; a
	// Manager whose issuer has this directory serves and renews it.
	// Required.
	Directory string
	// Name is the name it is managed under: a DNS name, a wildcard
	// "*.example.com" or an IP address that the leaf covers. Required.
	Name string
	// ChainPEM is the certificate chain, leaf first. Required.
	ChainPEM []byte
	// Key is the leaf's private key (ECDSA or RSA). Required.
	Key crypto.Signer
	// OrderURL, CertificateURL and AccountURL say where it came from, when
	// known; a renewal sends "replaces" (RFC 9773) only when AccountURL is
	// the Manager's account. Empty means unknown.
	OrderURL, CertificateURL, AccountURL string
	// ObtainedAt is when it was obtained. Zero means now.
	ObtainedAt time.Time
	// Replace stores it even when a certificate that expires no earlier
	// is stored already. False keeps the stored one (ErrNewerStored).
	Replace bool
}

// ImportCertificate stores c in store in the format and under the key a
// Manager reads, so that a Manager for c.Directory serves it, with no
// order, and renews it when due. It is written atomically (one value:
// chain, key and metadata) under the name's storage lock, the one a
// Manager's order takes, so it never races a Manager of the fleet ordering
// the same name.
//
// It fails with an error wrapping ErrInvalidImport for a certificate a
// Manager could not serve, and with ErrNewerStored when a certificate
// that expires no earlier is stored and c.Replace is false. Expiry is not
// checked: an expired certificate is stored, and a Manager renews it at
// once.
func ImportCertificate(ctx context.Context, store storage.Storage, c ImportedCertificate) error {
	if store == nil {
		return fmt.Errorf("%w: no storage", ErrInvalidImport)
	}
	if u, err := url.Parse(c.Directory); err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%w: directory %q is not an https URL", ErrInvalidImport, c.Directory)
	}
	name, err := importName(c.Name)
	if err != nil {
		return err
	}
	if c.Key == nil {
		return fmt.Errorf("%w: %s: no key", ErrInvalidImport, name)
	}
	keyDER, err := encodeKeyDER(c.Key)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalidImport, name, err)
	}
	s := &storedCert{storedMeta: storedMeta{
		Name:           name,
		Issuer:         c.Directory,
		OrderURL:       c.OrderURL,
		CertificateURL: c.CertificateURL,
		AccountURL:     c.AccountURL,
		ObtainedAt:     c.ObtainedAt.UTC(),
	}, Key: keyDER, Chain: chainDER(c.ChainPEM)}
	if s.ObtainedAt.IsZero() {
		s.ObtainedAt = time.Now().UTC()
	}
	cert, err := s.tlsCertificate(name, nil)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalidImport, name, strings.TrimPrefix(err.Error(), errCorrupt.Error()+": "))
	}
	data, err := encodeStoredCert(s)
	if err != nil {
		return err
	}
	key := "certificates/" + issuerKey(c.Directory) + "/" + storageName(name) + ".json"
	lockCtx, unlock, err := storage.LockContext(ctx, store, "issue/"+storageName(name))
	if err != nil {
		return fmt.Errorf("autotls: locking %s: %w", name, err)
	}
	defer unlock()
	if !c.Replace {
		if old, err := store.Load(lockCtx, key); err == nil {
			if prev, err := decodeStored(old); err == nil {
				if pc, err := prev.tlsCertificate(name, nil); err == nil && !pc.Leaf.NotAfter.Before(cert.Leaf.NotAfter) {
					return fmt.Errorf("%w: %s (until %s)", ErrNewerStored, name, pc.Leaf.NotAfter.UTC().Format(time.RFC3339))
				}
			}
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("autotls: importing %s: %w", name, err)
		}
	}
	if err := store.Store(lockCtx, key, data); err != nil {
		return fmt.Errorf("autotls: importing %s: %w", name, err)
	}
	return nil
}

// importName normalises the name of an imported certificate.
func importName(name string) (string, error) {
	if a, ok := parseIPName(name); ok {
		return a.String(), nil
	}
	base, wild := strings.CutPrefix(name, "*.")
	n, err := NormalizeName(base)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidImport, err)
	}
	if wild {
		n = "*." + n
	}
	return n, nil
}

// CertificateNames returns the names a certificate can be managed under,
// as ImportCertificate takes them: its DNS names (wildcards included)
// and IP addresses, normalised, without duplicates.
func CertificateNames(leaf *x509.Certificate) []string {
	if leaf == nil {
		return nil
	}
	var out []string
	for _, n := range leaf.DNSNames {
		if v, err := importName(n); err == nil && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	for _, ip := range leaf.IPAddresses {
		if v, err := importName(ip.String()); err == nil && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// StoredIssuers returns the ACME directory URLs that certificates in store
// were obtained from (or imported for), sorted: the issuers a Manager
// needs in Manager.Issuers to see every stored certificate, for example
// to list them with Manager.Certificates. It reads one stored value per
// directory.
func StoredIssuers(ctx context.Context, store storage.Storage) ([]string, error) {
	keys, err := store.List(ctx, "certificates/")
	if err != nil {
		return nil, fmt.Errorf("autotls: listing stored certificates: %w", err)
	}
	bySegment := map[string][]string{}
	for _, k := range keys {
		seg, rest, ok := strings.Cut(strings.TrimPrefix(k, "certificates/"), "/")
		if ok && strings.HasSuffix(rest, ".json") && !strings.Contains(rest, "/") {
			bySegment[seg] = append(bySegment[seg], k)
		}
	}
	var out []string
	for seg, ks := range bySegment {
		for _, k := range ks {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			b, err := store.Load(ctx, k)
			if err != nil {
				continue
			}
			if s, err := decodeStored(b); err == nil && s.Issuer != "" && issuerKey(s.Issuer) == seg {
				out = append(out, s.Issuer)
				break
			}
		}
	}
	slices.Sort(out)
	return out, nil
}
