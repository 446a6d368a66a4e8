package solvers_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/solvers"
)

func TestPersistRecordString(t *testing.T) {
	t.Parallel()
	until := time.Date(2026, 7, 26, 0, 0, 0, 0, time.UTC) // 1785024000
	tests := []struct {
		name string
		r    solvers.PersistRecord
		want string
	}{
		// The draft's example.
		{"plain", solvers.PersistRecord{IssuerDomainName: "authority.example", AccountURI: "https://ca.example/acct/123"},
			"authority.example; accounturi=https://ca.example/acct/123"},
		{"wildcard", solvers.PersistRecord{IssuerDomainName: "authority.example", AccountURI: "https://ca.example/acct/123", Wildcard: true},
			"authority.example; accounturi=https://ca.example/acct/123; policy=wildcard"},
		{"persistUntil", solvers.PersistRecord{IssuerDomainName: "ca2.example", AccountURI: "https://ca2.example/acme/acct/67890", PersistUntil: until},
			"ca2.example; accounturi=https://ca2.example/acme/acct/67890; persistUntil=1785024000"},
		{"both", solvers.PersistRecord{IssuerDomainName: "letsencrypt.org", AccountURI: "https://acme-v02.api.letsencrypt.org/acme/acct/1", Wildcard: true, PersistUntil: until},
			"letsencrypt.org; accounturi=https://acme-v02.api.letsencrypt.org/acme/acct/1; policy=wildcard; persistUntil=1785024000"},
	}
	for _, tt := range tests {
		if got := tt.r.String(); got != tt.want {
			t.Errorf("%s: String() = %q, want %q", tt.name, got, tt.want)
		}
		back, err := solvers.ParsePersistRecord(tt.want)
		if err != nil || back != tt.r {
			t.Errorf("%s: ParsePersistRecord(%q) = %+v, %v; want %+v", tt.name, tt.want, back, err, tt.r)
		}
		if got := tt.r.ZoneFileValue(); got != `"`+tt.want+`"` {
			t.Errorf("%s: ZoneFileValue() = %s, want the value quoted", tt.name, got)
		}
	}
	long := solvers.PersistRecord{IssuerDomainName: "ca.example", AccountURI: "https://ca.example/acct/" + strings.Repeat("x", 300)}
	zv := long.ZoneFileValue()
	parts := strings.Split(zv, `" "`)
	if len(parts) != 2 || len(strings.Trim(parts[0], `"`)) != 255 {
		t.Errorf("ZoneFileValue of %d octets = %s, want two character-strings, the first of 255", len(long.String()), zv)
	}
	if strings.ReplaceAll(strings.Trim(zv, `"`), `" "`, "") != long.String() {
		t.Errorf("ZoneFileValue does not join back to the value")
	}
}

func TestParsePersistRecord(t *testing.T) {
	t.Parallel()
	until := time.Unix(1721952000, 0).UTC()
	ok := []struct {
		name, in string
		want     solvers.PersistRecord
	}{
		{"spaces around everything", "  ca.example ;\taccounturi = https://ca.example/a/1 ;  policy=wildcard ", solvers.PersistRecord{IssuerDomainName: "ca.example", AccountURI: "https://ca.example/a/1", Wildcard: true}},
		{"no spaces", "ca.example;accounturi=https://ca.example/a/1;persistUntil=1721952000", solvers.PersistRecord{IssuerDomainName: "ca.example", AccountURI: "https://ca.example/a/1", PersistUntil: until}},
		{"tags in any case", "ca.example; AccountURI=https://ca.example/a/1; POLICY=WildCard; PERSISTUNTIL=1721952000", solvers.PersistRecord{IssuerDomainName: "ca.example", AccountURI: "https://ca.example/a/1", Wildcard: true, PersistUntil: until}},
		{"other policy means none", "ca.example; accounturi=https://ca.example/a/1; policy=everything", solvers.PersistRecord{IssuerDomainName: "ca.example", AccountURI: "https://ca.example/a/1"}},
		{"unknown tags ignored", "ca.example; future-tag=x; accounturi=https://ca.example/a/1", solvers.PersistRecord{IssuerDomainName: "ca.example", AccountURI: "https://ca.example/a/1"}},
	}
	for _, tt := range ok {
		got, err := solvers.ParsePersistRecord(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("%s: ParsePersistRecord(%q) = %+v, %v; want %+v", tt.name, tt.in, got, err, tt.want)
		}
	}
	bad := []struct{ name, in string }{
		{"empty", ""},
		{"no accounturi", "ca.example; policy=wildcard"},
		{"empty accounturi", "ca.example; accounturi="},
		{"no issuer", "; accounturi=https://ca.example/a/1"},
		{"issuer with a space", "ca example; accounturi=https://ca.example/a/1"},
		{"issuer label with an underscore", "_ca.example; accounturi=https://ca.example/a/1"},
		{"trailing semicolon", "ca.example; accounturi=https://ca.example/a/1;"},
		{"empty parameter", "ca.example;; accounturi=https://ca.example/a/1"},
		{"no equals", "ca.example; accounturi"},
		{"duplicate tag", "ca.example; accounturi=https://a/1; AccountUri=https://a/2"},
		{"space in a value", "ca.example; accounturi=https://a/1 x"},
		{"non-ASCII value", "ca.example; accounturi=https://ä/1"},
		{"persistUntil not a number", "ca.example; accounturi=https://a/1; persistUntil=tomorrow"},
		{"persistUntil negative", "ca.example; accounturi=https://a/1; persistUntil=-1"},
		{"persistUntil huge", "ca.example; accounturi=https://a/1; persistUntil=99999999999999"},
		{"bad tag", "ca.example; -x=1; accounturi=https://a/1"},
		{"too long", "ca.example; accounturi=https://a/" + strings.Repeat("x", solvers.MaxPersistRecordLen)},
	}
	for _, tt := range bad {
		if got, err := solvers.ParsePersistRecord(tt.in); !errors.Is(err, solvers.ErrMalformedPersistRecord) {
			t.Errorf("%s: ParsePersistRecord(%q) = %+v, %v; want an error wrapping ErrMalformedPersistRecord", tt.name, tt.in, got, err)
		}
	}
}

// FuzzParsePersistRecord: the parser never panics, and what it accepts
// prints back to a value that parses to the same record.
func FuzzParsePersistRecord(f *testing.F) {
	for _, s := range []string{
		"authority.example; accounturi=https://ca.example/acct/123",
		"ca.example;accounturi=x;policy=wildcard;persistUntil=1721952000",
		" ca.example ; accounturi = a ; x=y ",
		"ca.example; accounturi=a; accounturi=b",
		";;;",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		r, err := solvers.ParsePersistRecord(v)
		if err != nil {
			return
		}
		back, err := solvers.ParsePersistRecord(r.String())
		if err != nil {
			t.Fatalf("ParsePersistRecord(%q) = %+v, but its String %q does not parse: %v", v, r, r.String(), err)
		}
		if back != r {
			t.Fatalf("round trip of %q: %+v, then %+v", v, r, back)
		}
	})
}
