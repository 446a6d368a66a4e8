package watchdog

import (
	"crypto/x509"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/tlsmint/tlsmint/internal/textclip"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/revocation"
)

// A Result is what one probe of one [Target] found. It holds only public
// data: the served certificates, never a key.
type Result struct {
	// Target is what was probed.
	Target Target
	// Time is when the handshake ended (or failed), by [Watchdog.Now];
	// the expiry checks are made at this time.
	Time time.Time
	// Latency is how long the dial and handshake took (zero when the
	// target was not dialled).
	Latency time.Duration
	// Chain is the chain as served, leaf first; nil when no handshake
	// completed.
	Chain []*x509.Certificate
	// Held is the certificate the Manager holds for the target's name,
	// for a managed target; nil for others and when the Manager holds
	// none.
	Held *record.Certificate
	// Revocation is what the CRLs the leaf names said (Checked false
	// when it names none, or they could not be read: RevocationErr then
	// says why, and the leaf is not reported revoked or not).
	Revocation    revocation.Status
	RevocationErr error
	// Problems are what is wrong, each wrapping one of the package's
	// Err values (ErrExpiringSoon, ErrUntrusted, …); empty when the
	// target is healthy. A target that was not reached has exactly one.
	Problems []error
}

// OK reports whether the probe found no problem.
func (r Result) OK() bool { return len(r.Problems) == 0 }

// Err joins the problems into one error (nil when there are none), for
// errors.Is and for logging.
func (r Result) Err() error { return errors.Join(r.Problems...) }

// Leaf returns the served leaf certificate, or nil when no handshake
// completed.
func (r Result) Leaf() *x509.Certificate {
	if len(r.Chain) == 0 {
		return nil
	}
	return r.Chain[0]
}

// Serial returns the served leaf's serial number in hex, as
// [record.Certificate.Serial] spells it; empty without a leaf.
func (r Result) Serial() string {
	if l := r.Leaf(); l != nil {
		return serialHex(l)
	}
	return ""
}

func serialHex(c *x509.Certificate) string { return hex.EncodeToString(c.SerialNumber.Bytes()) }

// ProblemNames returns the names of the result's problems ([ProblemName]),
// each once, in the order found; nil when it has none.
func (r Result) ProblemNames() []string {
	var names []string
	for _, p := range r.Problems {
		if n := ProblemName(p); !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// maxAuditDetail caps the problems' text in an audit record.
const maxAuditDetail = 1024

// auditRecord is the result as an audit record: the target, the served
// leaf's serial and expiry, and the problems (names and text).
func (r Result) auditRecord() record.Audit {
	rec := record.Audit{
		Time: r.Time, Kind: record.KindProbe, Outcome: record.OutcomeOK, Operation: "probe",
		Target: r.Target.Addr, Serial: r.Serial(), Latency: r.Latency,
	}
	if r.Target.ServerName != "" {
		rec.Names = []string{r.Target.ServerName}
	}
	if l := r.Leaf(); l != nil {
		rec.NotAfter = l.NotAfter
	}
	if !r.OK() {
		rec.Outcome = record.OutcomeFailure
		rec.Problem = strings.Join(r.ProblemNames(), ",")
		rec.Detail = r.Err().Error()
		rec.Detail = textclip.Prefix(rec.Detail, maxAuditDetail)
	}
	return rec
}
