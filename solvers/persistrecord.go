package solvers

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// PersistRecordLabel is the label under which dns-persist-01 records live:
// the record for example.com is at _validation-persist.example.com.
const PersistRecordLabel = "_validation-persist"

// MaxPersistRecordLen bounds the TXT value [ParsePersistRecord] accepts, in
// octets; a record is a few hundred at most.
const MaxPersistRecordLen = 4096

// ErrMalformedPersistRecord is returned (wrapped) by [ParsePersistRecord]
// for a value that is not a dns-persist-01 record.
var ErrMalformedPersistRecord = errors.New("solvers: malformed dns-persist-01 record")

// A PersistRecord is the value of a dns-persist-01 TXT record
// (draft-ietf-acme-dns-persist): an RFC 8659 issue-value that names the
// CA by one of its issuer domain names and binds the domain to one ACME
// account, optionally for wildcards and subdomains too, and optionally
// until a time.
type PersistRecord struct {
	// IssuerDomainName names the CA, as its dns-persist-01 challenges
	// list it (issuer-domain-names), such as "letsencrypt.org".
	IssuerDomainName string
	// AccountURI is the ACME account's URL.
	AccountURI string
	// Wildcard is the policy=wildcard parameter: the record then also
	// validates *.name and every subdomain of the name. Without it, it
	// validates the name alone.
	Wildcard bool
	// PersistUntil is the persistUntil parameter, after which the CA no
	// longer accepts the record for a validation; zero means none. It has
	// a precision of one second.
	PersistUntil time.Time
}

// String returns the record's TXT value in canonical form:
//
//	<issuer>; accounturi=<uri>[; policy=wildcard][; persistUntil=<unix seconds>]
//
// the form the draft's examples use and the test CA (Pebble) validates. A
// value longer than 255 octets must be published as several
// character-strings of one record (see [PersistRecord.ZoneFileValue]); DNS
// joins them back.
func (r PersistRecord) String() string {
	var b strings.Builder
	b.WriteString(r.IssuerDomainName)
	b.WriteString("; accounturi=")
	b.WriteString(r.AccountURI)
	if r.Wildcard {
		b.WriteString("; policy=wildcard")
	}
	if !r.PersistUntil.IsZero() {
		b.WriteString("; persistUntil=")
		b.WriteString(strconv.FormatInt(r.PersistUntil.Unix(), 10))
	}
	return b.String()
}

// ZoneFileValue returns the value as a zone file or most DNS consoles
// take it: quoted, in character-strings of at most 255 octets separated by
// spaces.
func (r PersistRecord) ZoneFileValue() string {
	return quoteTXT(r.String())
}

// quoteTXT quotes v as one or more character-strings of at most 255
// octets. The values quoted here never hold '"' or '\' (parameter values
// cannot), so no escaping is needed.
func quoteTXT(v string) string {
	var parts []string
	for len(v) > 255 {
		parts = append(parts, `"`+v[:255]+`"`)
		v = v[255:]
	}
	return strings.Join(append(parts, `"`+v+`"`), " ")
}

// ParsePersistRecord parses a dns-persist-01 TXT value (its
// character-strings joined): an issuer domain name, then parameters
// tag=value separated by ';', with optional spaces or tabs around each
// part, as RFC 8659's issue-value allows. Tags are case-insensitive;
// accounturi is required, policy is read as the draft says (only
// "wildcard", in any case, means anything), persistUntil must be a base-10
// integer of Unix seconds, and unknown tags are ignored. Duplicate tags,
// empty parameters, characters outside printable ASCII in a value, or
// an issuer domain name that is not a host name fail with an error
// wrapping [ErrMalformedPersistRecord] — what a CA reports as malformed.
// The issuer domain name is kept as written; CAs compare it exactly.
func ParsePersistRecord(v string) (PersistRecord, error) {
	var r PersistRecord
	if len(v) > MaxPersistRecordLen {
		return r, fmt.Errorf("%w: %d octets long", ErrMalformedPersistRecord, len(v))
	}
	parts := strings.Split(v, ";")
	r.IssuerDomainName = trimWSP(parts[0])
	if !validIssuerName(r.IssuerDomainName) {
		return r, fmt.Errorf("%w: issuer domain name %q", ErrMalformedPersistRecord, truncate(r.IssuerDomainName))
	}
	seen := make(map[string]bool, len(parts)-1)
	for _, p := range parts[1:] {
		p = trimWSP(p)
		tag, value, ok := strings.Cut(p, "=")
		if !ok {
			return r, fmt.Errorf("%w: parameter %q is not tag=value", ErrMalformedPersistRecord, truncate(p))
		}
		tag, value = trimWSP(tag), trimWSP(value)
		if !validTag(tag) {
			return r, fmt.Errorf("%w: parameter tag %q", ErrMalformedPersistRecord, truncate(tag))
		}
		for i := 0; i < len(value); i++ {
			if c := value[i]; c < 0x21 || c > 0x7e {
				return r, fmt.Errorf("%w: value of %s holds %q", ErrMalformedPersistRecord, truncate(tag), c)
			}
		}
		lt := strings.ToLower(tag)
		if seen[lt] {
			return r, fmt.Errorf("%w: duplicate parameter %s", ErrMalformedPersistRecord, truncate(tag))
		}
		seen[lt] = true
		switch lt {
		case "accounturi":
			r.AccountURI = value
		case "policy":
			r.Wildcard = strings.EqualFold(value, "wildcard")
		case "persistuntil":
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || n < 0 || n > maxPersistUntil {
				return r, fmt.Errorf("%w: persistUntil %q is not Unix seconds", ErrMalformedPersistRecord, truncate(value))
			}
			r.PersistUntil = time.Unix(n, 0).UTC()
		}
	}
	if r.AccountURI == "" {
		return r, fmt.Errorf("%w: no accounturi", ErrMalformedPersistRecord)
	}
	return r, nil
}

// maxPersistUntil is the latest persistUntil accepted: the year 9999.
const maxPersistUntil = 253402300799

// trimWSP trims RFC 8659's white space (spaces and tabs).
func trimWSP(s string) string {
	return strings.Trim(s, " \t")
}

// validTag reports whether t is an RFC 8659 tag: letters and digits with
// inner hyphens.
func validTag(t string) bool {
	if t == "" || t[0] == '-' || t[len(t)-1] == '-' {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// validIssuerName reports whether d is an RFC 8659 issuer-domain-name:
// dot-separated labels of letters and digits with inner hyphens.
func validIssuerName(d string) bool {
	if d == "" || len(d) > 253 {
		return false
	}
	for label := range strings.SplitSeq(d, ".") {
		if len(label) > 63 || !validTag(label) {
			return false
		}
	}
	return true
}

// covers reports why r does not let the CA validate want's name at now,
// or "" when it does: the same issuer and account, policy=wildcard when
// want has it, and a persistUntil, if any, after now.
func (r PersistRecord) covers(want PersistRecord, now time.Time) string {
	switch {
	case r.IssuerDomainName != want.IssuerDomainName:
		return fmt.Sprintf("it names the CA %q, not %q", r.IssuerDomainName, want.IssuerDomainName)
	case r.AccountURI != want.AccountURI:
		return fmt.Sprintf("it names the account %q, not this one (%q)", truncate(r.AccountURI), want.AccountURI)
	case want.Wildcard && !r.Wildcard:
		return "it lacks policy=wildcard, which a wildcard name needs"
	case !r.PersistUntil.IsZero() && !now.Before(r.PersistUntil):
		return fmt.Sprintf("its persistUntil (%s) has passed", r.PersistUntil.UTC().Format(time.RFC3339))
	}
	return ""
}
