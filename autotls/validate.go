package autotls

import (
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"strings"
)

// ErrInvalidConfig is returned (wrapped, with what to change) by
// [Manager.Validate], and by Listen, Manage, NewListener and GetCertificate,
// when the Manager's fields cannot obtain a certificate.
var ErrInvalidConfig = errors.New("autotls: invalid configuration")

// Validate reports, before any handshake or CA request, whether the
// Manager can obtain certificates as configured, with an error wrapping
// [ErrInvalidConfig] for each problem that says what to change: no
// challenge that can be solved, an unknown KeyType, an Issuers[i].DirectoryURL
// that is not an absolute https URL, an Issuers[i].Email that is not a
// bare address, no storage (Storage nil and no user cache folder), or a
// DefaultServerName that is not a valid server name (or an IP address
// without AllowIPCertificates). Every problem found is in the one error
// (joined, so errors.Is matches ErrInvalidConfig), each naming its field.
//
// Whether a challenge can be solved depends on [Manager.HTTPHandler]
// having been called when only http-01 is left, so call HTTPHandler first.
// [Manager.Listen], [Manager.Manage] and [NewListener] call Validate and
// return its error before they listen or order; [Manager.TLSConfig]
// cannot return one, so GetCertificate returns it for every name that is
// not cached, without touching storage or the CA.
//
// Validate counts as the Manager's first use: set the fields before.
func (m *Manager) Validate() error {
	return m.validate(m.state())
}

// validate adds the challenge check, which can change when HTTPHandler is
// called, to the checks of the fields made once at first use.
func (m *Manager) validate(st *state) error {
	if st.configErr == nil && m.challengeErr(st) == nil {
		return nil // the hot path's miss: no allocation
	}
	return errors.Join(st.configErr, m.challengeErr(st))
}

func (m *Manager) challengeErr(st *state) error {
	if st.dns != nil || m.DNSPersist01 != nil || !m.DisableTLSALPN01 {
		return nil
	}
	if m.DisableHTTP01 {
		return fmt.Errorf("%w: no challenge can be solved: DisableTLSALPN01 and DisableHTTP01 are set and neither dns-01 nor dns-persist-01 is configured: enable tls-alpn-01 or http-01, or set DNS01 or DNSPersist01", ErrInvalidConfig)
	}
	if !st.httpInUse.Load() {
		return fmt.Errorf("%w: no challenge can be solved: DisableTLSALPN01 is set, dns-01 is not configured and HTTPHandler has not been called: call HTTPHandler before Listen or enable tls-alpn-01 or dns-01 (DNS01)", ErrInvalidConfig)
	}
	return nil
}

// checkFields checks what does not change after first use.
func (m *Manager) checkFields(st *state) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: "+format, append([]any{ErrInvalidConfig}, args...)...))
	}
	switch m.KeyType {
	case "", KeyP256, KeyP384, KeyRSA2048, KeyRSA4096:
	default:
		bad("unknown KeyType %q: use KeyP256, KeyP384, KeyRSA2048 or KeyRSA4096 (empty means KeyP256)", clip(string(m.KeyType)))
	}
	// Every issuer is checked, and named by its index in Issuers (the
	// default issuer of an empty Issuers is valid).
	for i, iss := range st.issuers {
		u, err := url.Parse(iss.url)
		if err != nil || u.Scheme != "https" || u.Host == "" || u.Opaque != "" {
			bad("Issuers[%d].DirectoryURL %q is not an absolute https URL such as %s", i, clip(iss.url), "https://acme-v02.api.letsencrypt.org/directory")
		}
		if iss.cfg.Email != "" {
			if err := checkEmail(iss.cfg.Email); err != nil {
				bad("Issuers[%d].Email %q: %v: use a bare address such as ops@example.com", i, clip(iss.cfg.Email), err)
			}
		}
	}
	if st.storeErr != nil {
		errs = append(errs, st.storeErr)
	}
	if m.DefaultServerName != "" {
		if _, err := m.serverName(m.DefaultServerName); err != nil {
			bad("DefaultServerName %q: %w", clip(m.DefaultServerName), err)
		}
	}
	return errors.Join(errs...)
}

// checkEmail accepts a bare address whose domain is a valid host name.
func checkEmail(email string) error {
	a, err := mail.ParseAddress(email)
	if err != nil {
		return err
	}
	if a.Name != "" || a.Address != email {
		return errors.New("not a bare address")
	}
	i := strings.LastIndexByte(a.Address, '@')
	if _, err := NormalizeName(a.Address[i+1:]); err != nil {
		return fmt.Errorf("domain: %w", err)
	}
	return nil
}
