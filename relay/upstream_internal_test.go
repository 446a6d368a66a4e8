package relay

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/solvers"
)

// TestDownstreamProblemPersist: an upstream issuance that failed because
// a read-only dns-persist-01 solver found records missing is an
// unauthorized problem naming every record (once), wrapped as
// acme.Client.Obtain wraps a solver's error; too many are cut with a
// count; other failures keep the upstream's problem.
func TestDownstreamProblemPersist(t *testing.T) {
	rec := func(n int) *solvers.PersistRecordError {
		return &solvers.PersistRecordError{
			Name:   fmt.Sprintf("_validation-persist.n%d.example", n),
			Record: solvers.PersistRecord{IssuerDomainName: "letsencrypt.org", AccountURI: "https://ca.example/acct/1"},
			Reason: "nameserver 192.0.2.1:53: no TXT record there",
		}
	}
	one := &upstreamError{name: "le", err: fmt.Errorf("acme: presenting dns-persist-01 challenge for n1.example: %w", rec(1))}
	p := downstreamProblem(one)
	want := `_validation-persist.n1.example. IN TXT "letsencrypt.org; accounturi=https://ca.example/acct/1" (nameserver 192.0.2.1:53: no TXT record there)`
	if p.Type != acme.ErrUnauthorized.Type || p.Status != http.StatusForbidden || !strings.Contains(p.Detail, want) || !strings.HasPrefix(p.Detail, "upstream CA: upstream le: ") {
		t.Errorf("one record: %+v, want unauthorized naming %s", p, want)
	}

	two := &upstreamError{name: "le", err: fmt.Errorf("2 missing: %w", errors.Join(rec(1), rec(2), rec(1)))}
	p = downstreamProblem(two)
	if strings.Count(p.Detail, "IN TXT") != 2 || !strings.Contains(p.Detail, "n2.example. IN TXT") {
		t.Errorf("two records: %s", p.Detail)
	}

	var many []error
	for i := range 200 {
		many = append(many, rec(i))
	}
	p = downstreamProblem(errors.Join(many...))
	if len(p.Detail) > maxPersistDetail || !strings.Contains(p.Detail, "more (in the relay's log)") || !strings.Contains(p.Detail, "n0.example") {
		t.Errorf("200 records: %d bytes, %.200s…%s", len(p.Detail), p.Detail, p.Detail[max(0, len(p.Detail)-100):])
	}

	rl := &upstreamError{name: "le", err: &acme.Problem{Type: "urn:ietf:params:acme:error:rateLimited", Status: 429, Detail: "slow down"}}
	if p := downstreamProblem(rl); p.Type != "urn:ietf:params:acme:error:rateLimited" || !strings.HasPrefix(p.Detail, "upstream CA: upstream le: ") || !strings.Contains(p.Detail, "slow down") {
		t.Errorf("rate limited: %+v", p)
	}
}
