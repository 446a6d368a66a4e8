package autotls

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash/crc32"
	"net/url"
	"strings"
	"time"
)

// storedCert is how a certificate, its key and the metadata its lifecycle
// needs are kept: one value, written atomically, so that a reader never sees
// a certificate without its key.
//
// The value is stored in format 2 (see encodeStoredCert): a header line,
// the metadata as JSON, then the chain and the key as DER, and a checksum.
// Values in format 1 (one JSON object with the chain and key in PEM) are
// read as well, and written in format 2 the next time they are stored.
type storedCert struct {
	storedMeta
	// Chain is the certificate chain in DER, leaf first.
	Chain [][]byte
	// Key is the certificate's private key in PKCS #8 DER.
	Key []byte
	// version is the format the value was read in (0 for a new one).
	version int
}

// storedMeta is a stored certificate's metadata: the JSON header of a
// format 2 value, and the fields of a format 1 value other than the
// version and the PEM.
type storedMeta struct {
	Name           string    `json:"name"`
	Issuer         string    `json:"issuer"`
	OrderURL       string    `json:"order_url,omitempty"`
	CertificateURL string    `json:"certificate_url,omitempty"`
	ObtainedAt     time.Time `json:"obtained_at"`
	// AccountURL is the account that obtained the certificate; renewals
	// send "replaces" only when the same account renews it.
	AccountURL string `json:"account_url,omitempty"`
	// ARIRenewed: the certificate replaced one that the CA's renewal
	// information had due, so that every node applies the same floor to
	// its renewal (renewFloor).
	ARIRenewed bool `json:"ari_renewed,omitempty"`
	// RenewFloor is the earliest the certificate may be renewed, set by
	// the Manager that ordered it (renewFloor); imports have none.
	RenewFloor time.Time `json:"renew_floor,omitzero"`
	// ARI is the CA's last renewal information for the certificate (RFC
	// 9773), so that a restart and every node of a fleet reuse it until
	// its next poll.
	ARI *ariState `json:"ari,omitempty"`
	// LastFailure records the last failed attempt to replace it, for
	// operators; Manager.Certificates reports it (storedInfo).
	LastFailure *failureState `json:"last_failure,omitempty"`
}

// storedV1 is a format 1 value.
type storedV1 struct {
	Version int `json:"version"`
	storedMeta
	CertificatePEM string `json:"certificate_pem"`
	PrivateKeyPEM  string `json:"private_key_pem"`
}

type ariState struct {
	WindowStart    time.Time `json:"window_start"`
	WindowEnd      time.Time `json:"window_end"`
	ExplanationURL string    `json:"explanation_url,omitempty"`
	// NextPoll is when to ask the CA again (its Retry-After, clamped to
	// between a minute and a day).
	NextPoll time.Time `json:"next_poll,omitzero"`
}

type failureState struct {
	At    time.Time `json:"at"`
	Error string    `json:"error"`
}

// storedVersion is the format values are written in.
const storedVersion = 2

// Format 2: storedMagic, then the JSON metadata, the number of
// certificates, each certificate's DER and the key's PKCS #8 DER, each
// length-prefixed (an unsigned varint, encoding/binary), then the CRC-32C
// of everything before it (4 bytes, big-endian).
const (
	storedMagic  = "tlsmint certificate v2\n"
	storedFamily = "tlsmint certificate v" // what any version's header line starts with

	maxStoredValue = 1 << 20 // a whole value
	maxStoredMeta  = 64 << 10
	maxStoredCerts = 16
	maxStoredDER   = 64 << 10 // one certificate
	maxStoredKey   = 16 << 10 // PKCS #8 of RSA 8192 is about 4.8 KiB
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt marks a stored value that cannot be used. Its messages never
// contain the value's bytes.
var errCorrupt = errors.New("autotls: stored certificate is corrupt")

// tlsCertificate parses the stored chain and key into a certificate ready
// to serve, checking that the key matches the leaf and that the leaf covers
// name. The result shares no memory with s: the leaf's DER is copied, and
// the other certificates of the chain go through share (which may return
// a copy held by other chains of the same CA), or are copied when share is
// nil. The key's parse error is not passed on: it could quote key bytes.
func (s *storedCert) tlsCertificate(name string, share func([]byte) []byte) (*tls.Certificate, error) {
	if len(s.Chain) == 0 {
		return nil, fmt.Errorf("%w: no certificate", errCorrupt)
	}
	chain := make([][]byte, len(s.Chain))
	chain[0] = bytes.Clone(s.Chain[0])
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	key, err := parseCertKey(s.Key)
	if err != nil {
		return nil, err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(leaf.PublicKey) {
		return nil, fmt.Errorf("%w: the private key does not match the certificate", errCorrupt)
	}
	if !covers(leaf, name) {
		return nil, fmt.Errorf("%w: certificate does not cover %q", errCorrupt, name)
	}
	for i, der := range s.Chain[1:] {
		if share != nil {
			chain[i+1] = share(der)
		} else {
			chain[i+1] = bytes.Clone(der)
		}
	}
	return &tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}, nil
}

// parseCertKey parses a certificate's PKCS #8 key. Its errors say what is
// wrong without quoting the key.
func parseCertKey(der []byte) (crypto.Signer, error) {
	if len(der) == 0 {
		return nil, fmt.Errorf("%w: no private key", errCorrupt)
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: the private key does not parse as PKCS #8", errCorrupt)
	}
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		return k, nil
	case *rsa.PrivateKey:
		return k, nil
	case ed25519.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("%w: unsupported private key type %T", errCorrupt, k)
}

// covers reports whether leaf holds exactly the SAN name (a host, a
// "*.domain" wildcard or an IP address).
func covers(leaf *x509.Certificate, name string) bool {
	if a, ok := parseIPName(name); ok {
		for _, ip := range leaf.IPAddresses {
			if ip.Equal(a.AsSlice()) {
				return true
			}
		}
		return false
	}
	for _, n := range leaf.DNSNames {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

// encodeStoredCert encodes a complete stored value in the current format.
func encodeStoredCert(s *storedCert) ([]byte, error) {
	if len(s.Chain) == 0 || len(s.Chain) > maxStoredCerts || len(s.Key) == 0 || len(s.Key) > maxStoredKey {
		return nil, fmt.Errorf("autotls: encoding stored certificate: %d certificates, %d key bytes", len(s.Chain), len(s.Key))
	}
	meta, err := json.Marshal(&s.storedMeta)
	if err != nil {
		return nil, fmt.Errorf("autotls: encoding stored certificate: %w", err)
	}
	size := len(storedMagic) + binary.MaxVarintLen64*(3+len(s.Chain)) + len(meta) + len(s.Key) + 4
	for _, der := range s.Chain {
		if len(der) == 0 || len(der) > maxStoredDER {
			return nil, fmt.Errorf("autotls: encoding stored certificate: a certificate of %d bytes", len(der))
		}
		size += len(der)
	}
	b := make([]byte, 0, size)
	b = append(b, storedMagic...)
	b = appendField(b, meta)
	b = binary.AppendUvarint(b, uint64(len(s.Chain)))
	for _, der := range s.Chain {
		b = appendField(b, der)
	}
	b = appendField(b, s.Key)
	b = binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
	if len(b) > maxStoredValue {
		return nil, fmt.Errorf("autotls: encoding stored certificate: %d bytes", len(b))
	}
	return b, nil
}

func appendField(b, field []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(field)))
	return append(b, field...)
}

// decodeStored decodes a stored value of any supported format. It parses
// the metadata only: the chain and key are checked by tlsCertificate. The
// chain and key of a format 2 value share memory with b. Every error wraps
// errCorrupt and says what is wrong without quoting the value.
func decodeStored(b []byte) (*storedCert, error) {
	switch {
	case len(b) > maxStoredValue:
		return nil, fmt.Errorf("%w: %d bytes", errCorrupt, len(b))
	case bytes.HasPrefix(b, []byte(storedMagic)):
		return decodeV2(b)
	case bytes.HasPrefix(b, []byte(storedFamily)):
		line, _, _ := bytes.Cut(b[len(storedFamily):], []byte("\n"))
		return nil, fmt.Errorf("%w: format %.8q is not supported (this version reads formats 1 and %d)", errCorrupt, line, storedVersion)
	}
	return decodeV1(b)
}

// decodeV2 decodes a format 2 value.
func decodeV2(b []byte) (*storedCert, error) {
	if len(b) < len(storedMagic)+4 {
		return nil, fmt.Errorf("%w: truncated", errCorrupt)
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != binary.BigEndian.Uint32(b[len(body):]) {
		return nil, fmt.Errorf("%w: checksum mismatch", errCorrupt)
	}
	r := fieldReader{b: body[len(storedMagic):]}
	meta := r.field("metadata", maxStoredMeta)
	n := r.uvarint("certificate count")
	if r.err == nil && (n == 0 || n > maxStoredCerts) {
		r.err = fmt.Errorf("%w: %d certificates", errCorrupt, n)
	}
	s := &storedCert{version: 2}
	if r.err == nil {
		s.Chain = make([][]byte, n)
		for i := range s.Chain {
			s.Chain[i] = r.field("certificate", maxStoredDER)
		}
	}
	s.Key = r.field("private key", maxStoredKey)
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the key", errCorrupt, len(r.b))
	}
	if err := json.Unmarshal(meta, &s.storedMeta); err != nil {
		return nil, fmt.Errorf("%w: metadata: %v", errCorrupt, err)
	}
	return s, nil
}

// fieldReader reads length-prefixed fields; the first error sticks.
type fieldReader struct {
	b   []byte
	err error
}

func (r *fieldReader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("%w: %s: truncated", errCorrupt, what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *fieldReader) field(what string, limit int) []byte {
	n := r.uvarint(what)
	if r.err != nil {
		return nil
	}
	if n == 0 || n > uint64(limit) || n > uint64(len(r.b)) {
		r.err = fmt.Errorf("%w: %s: %d bytes (%d left, at most %d)", errCorrupt, what, n, len(r.b), limit)
		return nil
	}
	f := r.b[:n:n]
	r.b = r.b[n:]
	return f
}

// decodeV1 decodes a format 1 value (JSON with the chain and key in PEM).
func decodeV1(b []byte) (*storedCert, error) {
	var v storedV1
	if err := json.Unmarshal(b, &v); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			// A syntax error quotes the character it stopped at; say
			// only where, since the value holds the key.
			return nil, fmt.Errorf("%w: not JSON (at byte %d)", errCorrupt, syn.Offset)
		}
		return nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	if v.Version != 1 {
		return nil, fmt.Errorf("%w: format %d is not supported (this version reads formats 1 and %d)", errCorrupt, v.Version, storedVersion)
	}
	s := &storedCert{storedMeta: v.storedMeta, version: 1, Chain: chainDER([]byte(v.CertificatePEM))}
	if len(s.Chain) == 0 {
		return nil, fmt.Errorf("%w: no PEM certificate", errCorrupt)
	}
	block, _ := pem.Decode([]byte(v.PrivateKeyPEM))
	if block == nil {
		return nil, fmt.Errorf("%w: no PEM private key", errCorrupt)
	}
	switch block.Type {
	case "PRIVATE KEY":
		s.Key = block.Bytes
	case "EC PRIVATE KEY", "RSA PRIVATE KEY":
		// Format 1 was read with tls.X509KeyPair, which takes these too.
		var k any
		var err error
		form := "SEC 1"
		if block.Type == "EC PRIVATE KEY" {
			k, err = x509.ParseECPrivateKey(block.Bytes)
		} else {
			form = "PKCS #1"
			k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: the private key does not parse as %s", errCorrupt, form)
		}
		if s.Key, err = x509.MarshalPKCS8PrivateKey(k); err != nil {
			return nil, fmt.Errorf("%w: the private key cannot be re-encoded", errCorrupt)
		}
	default:
		return nil, fmt.Errorf("%w: PEM block %.30q is not a private key", errCorrupt, block.Type)
	}
	return s, nil
}

// chainDER returns the DER of the CERTIFICATE blocks of a PEM chain, at
// most maxStoredCerts of them.
func chainDER(chainPEM []byte) [][]byte {
	var out [][]byte
	for rest := chainPEM; len(out) < maxStoredCerts; {
		var block *pem.Block
		if block, rest = pem.Decode(rest); block == nil {
			break
		}
		if block.Type == "CERTIFICATE" {
			out = append(out, block.Bytes)
		}
	}
	return out
}

// leafDER returns the DER of the stored leaf certificate.
func (s *storedCert) leafDER() []byte {
	if len(s.Chain) == 0 {
		return nil
	}
	return s.Chain[0]
}

// encodeKeyDER returns key in PKCS #8 DER.
func encodeKeyDER(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("autotls: encoding key: %w", err)
	}
	return der, nil
}

// encodeKey returns key as PKCS #8 PEM (account keys).
func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := encodeKeyDER(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func decodeKey(b []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, errors.New("autotls: no PEM key")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("autotls: parsing key: %w", err)
	}
	switch k := k.(type) {
	case *ecdsa.PrivateKey:
		return k, nil
	case *rsa.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("autotls: unsupported stored key %T", k)
}

// issuerKey turns a directory URL into a storage key segment:
// "acme-v02.api.letsencrypt.org-directory".
func issuerKey(dir string) string {
	u, err := url.Parse(dir)
	if err != nil || u.Host == "" {
		return "unknown-issuer"
	}
	s := u.Host + strings.TrimSuffix(u.Path, "/")
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-':
			return r
		}
		return '-'
	}, s)
}

// storageName turns a managed name into a key segment; '*' becomes
// "_wildcard" so that keys stay plain on every file system.
func storageName(name string) string {
	if base, ok := strings.CutPrefix(name, "*."); ok {
		return "_wildcard." + base
	}
	return strings.ReplaceAll(name, ":", "-") // IPv6
}
