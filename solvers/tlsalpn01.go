package solvers

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"

	"github.com/tlsmint/tlsmint/acme"
)

// ErrNoChallenge is returned (wrapped) by the tls-alpn-01 hooks when a
// ClientHello offers only acme-tls/1 but names no active challenge; the
// handshake then fails, as RFC 8737 requires, rather than falling back to an
// ordinary certificate.
var ErrNoChallenge = errors.New("solvers: no active tls-alpn-01 challenge")

// TLSALPN01 answers tls-alpn-01 challenges (RFC 8737). Present builds the
// challenge certificate ([acme.TLSALPN01Certificate]: a fresh key, exactly
// one subjectAltName equal to the identifier, the critical acmeIdentifier
// extension); the TLS hooks serve it to a ClientHello that offers exactly
// the acme-tls/1 protocol and names the identifier in its SNI (for an IP
// identifier, the reverse-lookup name of RFC 8738, section 6) until CleanUp.
//
// Any other ClientHello, including one offering h2 or http/1.1, never gets
// a challenge certificate.
//
// Use it on a listener of its own with [TLSALPN01.TLSConfig], or inside an
// existing [crypto/tls.Config]:
//
//	cfg.GetCertificate = s.Wrap(cfg.GetCertificate)
//	cfg.NextProtos = append(cfg.NextProtos, acme.ALPNProto)
//
// The zero value is ready to use; it must not be copied after first use. It
// is safe for concurrent use.
type TLSALPN01 struct {
	// Logger receives a debug record per challenge handshake. Nil means
	// silent.
	Logger *slog.Logger

	mu    sync.RWMutex
	certs map[string][]alpnCert // SNI name -> presented challenges, newest last
}

// alpnCert is one presented challenge.
type alpnCert struct {
	token string
	cert  *tls.Certificate
}

var _ acme.Solver = (*TLSALPN01)(nil)

// Present implements [acme.Solver]: it builds the challenge certificate and
// starts serving it.
func (s *TLSALPN01) Present(ctx context.Context, chal acme.Challenge) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkChallenge(chal, acme.ChallengeTLSALPN01); err != nil {
		return err
	}
	if chal.Wildcard {
		return fmt.Errorf("%w: tls-alpn-01 cannot prove a wildcard", ErrInvalidIdentifier)
	}
	name, err := alpnServerName(chal.Identifier)
	if err != nil {
		return err
	}
	norm, err := normalizeIdentifier(chal.Identifier)
	if err != nil {
		return err
	}
	chal.Identifier.Value = norm
	cert, err := acme.TLSALPN01Certificate(chal)
	if err != nil {
		return fmt.Errorf("solvers: tls-alpn-01 present: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.certs == nil {
		s.certs = make(map[string][]alpnCert)
	}
	list := s.certs[name]
	list = withoutToken(list, chal.Token)
	s.certs[name] = append(list, alpnCert{token: chal.Token, cert: cert})
	return nil
}

// CleanUp implements [acme.Solver]: it stops serving the challenge. Other
// challenges for the same identifier stay.
func (s *TLSALPN01) CleanUp(_ context.Context, chal acme.Challenge) error {
	name, err := alpnServerName(chal.Identifier)
	if err != nil {
		return nil // never presented
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	list := withoutToken(s.certs[name], chal.Token)
	if len(list) == 0 {
		delete(s.certs, name)
	} else {
		s.certs[name] = list
	}
	return nil
}

// withoutToken returns list without the entry for token, in a new
// array (the old one may be read by handshakes holding no lock).
func withoutToken(list []alpnCert, token string) []alpnCert {
	out := make([]alpnCert, 0, len(list))
	for _, c := range list {
		if c.token != token {
			out = append(out, c)
		}
	}
	return out
}

// IsChallengeHello reports whether hello is a tls-alpn-01 validation
// request: it offers exactly one application protocol, acme-tls/1.
func IsChallengeHello(hello *tls.ClientHelloInfo) bool {
	return len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acme.ALPNProto
}

// GetCertificate is a [crypto/tls.Config.GetCertificate] hook. For a
// challenge hello ([IsChallengeHello]) it returns the challenge certificate
// of the SNI name, or an error wrapping [ErrNoChallenge] if there is none.
// For any other hello it returns (nil, nil), so that crypto/tls falls back to
// the Config's Certificates; use [TLSALPN01.Wrap] to chain to another hook.
func (s *TLSALPN01) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if !IsChallengeHello(hello) {
		return nil, nil
	}
	return s.challengeCert(hello)
}

// Wrap returns a GetCertificate hook that answers challenge hellos (see
// [TLSALPN01.GetCertificate]) and passes every other hello to next. Nil next
// means (nil, nil), the Config's Certificates. A hello that is not a
// challenge costs two comparisons and no allocation before next is called.
func (s *TLSALPN01) Wrap(next func(*tls.ClientHelloInfo) (*tls.Certificate, error)) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if IsChallengeHello(hello) {
			return s.challengeCert(hello)
		}
		if next == nil {
			return nil, nil
		}
		return next(hello)
	}
}

// TLSConfig returns a configuration for a listener that serves tls-alpn-01
// challenges only: it negotiates acme-tls/1 and fails every handshake that
// is not a challenge.
func (s *TLSALPN01) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{acme.ALPNProto},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			if !IsChallengeHello(hello) {
				return nil, errors.New("solvers: tls-alpn-01 listener: not an acme-tls/1 hello")
			}
			return s.challengeCert(hello)
		},
	}
}

// challengeCert returns the newest challenge certificate for the hello's
// SNI name.
func (s *TLSALPN01) challengeCert(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := hello.ServerName
	if !isLowerASCII(name) {
		if !isASCII(name) {
			// Identifiers are ASCII: no Unicode case folding ("\u212a"
			// is "k" in lower case) may make a name match one.
			return nil, fmt.Errorf("%w for %q", ErrNoChallenge, truncate(hello.ServerName))
		}
		name = strings.ToLower(name)
	}
	name = strings.TrimSuffix(name, ".")
	s.mu.RLock()
	list := s.certs[name]
	s.mu.RUnlock()
	if len(list) == 0 {
		return nil, fmt.Errorf("%w for %q", ErrNoChallenge, truncate(hello.ServerName))
	}
	if s.Logger != nil {
		s.Logger.DebugContext(hello.Context(), "solvers: tls-alpn-01 challenge served", "sni", name, "remote", remoteAddr(hello))
	}
	return list[len(list)-1].cert, nil
}

func remoteAddr(hello *tls.ClientHelloInfo) string {
	if hello.Conn == nil {
		return ""
	}
	return hello.Conn.RemoteAddr().String()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

func isLowerASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; 'A' <= c && c <= 'Z' || c >= 0x80 {
			return false
		}
	}
	return true
}

// alpnServerName returns the SNI name under which the CA asks for an
// identifier's challenge: the DNS name itself, or for an IP address its
// reverse-lookup name ("4.3.2.1.in-addr.arpa", RFC 8738, section 6), lower
// case and without a trailing dot.
func alpnServerName(id acme.Identifier) (string, error) {
	norm, err := normalizeIdentifier(id)
	if err != nil {
		return "", err
	}
	if id.Type != acme.IdentifierIP {
		return norm, nil
	}
	return acme.ReverseName(netip.MustParseAddr(norm)), nil
}
