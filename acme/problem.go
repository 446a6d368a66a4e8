package acme

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// Problem type URNs (RFC 8555, section 6.7), without the
// "urn:ietf:params:acme:error:" prefix. [Problem.Is] compares only this
// suffix, so a CA that spells the type in another case or namespace still
// matches.
const (
	problemPrefix = "urn:ietf:params:acme:error:"
)

// Sentinel errors matched by [Problem.Is]: errors.Is(err, acme.ErrRateLimited)
// is true when err wraps a *Problem whose type is rateLimited.
var (
	ErrAccountDoesNotExist     = &Problem{Type: problemPrefix + "accountDoesNotExist"}
	ErrAlreadyReplaced         = &Problem{Type: problemPrefix + "alreadyReplaced"}
	ErrAlreadyRevoked          = &Problem{Type: problemPrefix + "alreadyRevoked"}
	ErrBadCSR                  = &Problem{Type: problemPrefix + "badCSR"}
	ErrBadNonce                = &Problem{Type: problemPrefix + "badNonce"}
	ErrBadPublicKey            = &Problem{Type: problemPrefix + "badPublicKey"}
	ErrBadRevocationReason     = &Problem{Type: problemPrefix + "badRevocationReason"}
	ErrBadSignatureAlgorithm   = &Problem{Type: problemPrefix + "badSignatureAlgorithm"}
	ErrCAA                     = &Problem{Type: problemPrefix + "caa"}
	ErrCompound                = &Problem{Type: problemPrefix + "compound"}
	ErrConnection              = &Problem{Type: problemPrefix + "connection"}
	ErrDNS                     = &Problem{Type: problemPrefix + "dns"}
	ErrExternalAccountRequired = &Problem{Type: problemPrefix + "externalAccountRequired"}
	ErrIncorrectResponse       = &Problem{Type: problemPrefix + "incorrectResponse"}
	ErrInvalidContact          = &Problem{Type: problemPrefix + "invalidContact"}
	ErrInvalidProfile          = &Problem{Type: problemPrefix + "invalidProfile"}
	ErrMalformed               = &Problem{Type: problemPrefix + "malformed"}
	ErrOrderNotReady           = &Problem{Type: problemPrefix + "orderNotReady"}
	ErrRateLimited             = &Problem{Type: problemPrefix + "rateLimited"}
	ErrRejectedIdentifier      = &Problem{Type: problemPrefix + "rejectedIdentifier"}
	ErrServerInternal          = &Problem{Type: problemPrefix + "serverInternal"}
	ErrTLS                     = &Problem{Type: problemPrefix + "tls"}
	ErrUnauthorized            = &Problem{Type: problemPrefix + "unauthorized"}
	ErrUnsupportedContact      = &Problem{Type: problemPrefix + "unsupportedContact"}
	ErrUnsupportedIdentifier   = &Problem{Type: problemPrefix + "unsupportedIdentifier"}
	ErrUserActionRequired      = &Problem{Type: problemPrefix + "userActionRequired"}
)

// A Problem is an error reported by the ACME server as an RFC 7807 problem
// document (RFC 8555, section 6.7), or synthesised by the client from an
// HTTP error response that carried no problem document.
//
// Match a kind of problem with errors.Is against the Err* sentinels, and get
// at the details with errors.As:
//
//	var p *acme.Problem
//	if errors.As(err, &p) && p.RetryAfter > 0 { ... }
type Problem struct {
	// Type is the problem type URN, for example
	// "urn:ietf:params:acme:error:rateLimited".
	Type string `json:"type"`
	// Detail is the human-readable explanation.
	Detail string `json:"detail,omitempty"`
	// Status is the HTTP status code of the response.
	Status int `json:"status,omitempty"`
	// Instance is an optional URL with more information.
	Instance string `json:"instance,omitempty"`
	// Identifier is the identifier a subproblem is about.
	Identifier *Identifier `json:"identifier,omitempty"`
	// Subproblems are per-identifier problems of a compound problem.
	Subproblems []Problem `json:"subproblems,omitempty"`
	// RetryAfter is how long the server asked the client to wait, from the
	// response's Retry-After header (zero when absent). It is bounded to
	// [MaxRetryAfter].
	RetryAfter time.Duration `json:"-"`
}

// UnmarshalJSON decodes a problem document from the CA and makes its text
// safe to print: detail, type and instance are stripped of control
// characters and capped ([MaxProblemDetail]), and at most 16 subproblems
// are kept, each treated the same way.
//
// Subproblems are decoded in the same pass as their parent, and their own
// nested subproblems (not part of RFC 8555) are skipped unread: decoding
// them through this method once per level made a deeply nested document
// cost time quadratic in its depth (seconds for 90 KB).
func (p *Problem) UnmarshalJSON(b []byte) error {
	var w struct {
		problemFields
		Subproblems []problemFields `json:"subproblems"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*p = w.problem()
	if len(w.Subproblems) > 0 {
		p.Subproblems = make([]Problem, 0, min(len(w.Subproblems), maxSubproblems))
		for _, sp := range w.Subproblems[:min(len(w.Subproblems), maxSubproblems)] {
			p.Subproblems = append(p.Subproblems, sp.problem())
		}
	}
	return nil
}

// problemFields are the members of a problem document but its
// subproblems.
type problemFields struct {
	Type       string      `json:"type"`
	Detail     string      `json:"detail"`
	Status     int         `json:"status"`
	Instance   string      `json:"instance"`
	Identifier *Identifier `json:"identifier"`
}

// problem returns the fields as a Problem, with its text sanitized.
func (f problemFields) problem() Problem {
	p := Problem{Type: f.Type, Detail: f.Detail, Status: f.Status, Instance: f.Instance, Identifier: f.Identifier}
	p.sanitize()
	return p
}

// sanitize caps and cleans the CA-controlled text of p (not of its
// subproblems).
func (p *Problem) sanitize() {
	p.Type = clipString(p.Type, maxProblemType)
	p.Instance = clipString(p.Instance, maxProblemType)
	p.Detail = clipString(p.Detail, MaxProblemDetail)
	if p.Identifier != nil {
		p.Identifier.Type = clipString(p.Identifier.Type, 32)
		p.Identifier.Value = clipString(p.Identifier.Value, 256)
	}
}

// kind returns the part of the type after the last ':' in the ACME namespace,
// lower-cased, so that comparisons survive odd spellings.
func (p *Problem) kind() string {
	t := p.Type
	if i := strings.LastIndexByte(t, ':'); i >= 0 {
		t = t[i+1:]
	}
	return strings.ToLower(t)
}

// Error returns a one-line description: "acme: <type>: <detail> (HTTP <status>)".
func (p *Problem) Error() string {
	var b strings.Builder
	b.WriteString("acme: ")
	if p.Type != "" {
		b.WriteString(strings.TrimPrefix(p.Type, problemPrefix))
	} else {
		b.WriteString("error")
	}
	if p.Detail != "" {
		b.WriteString(": ")
		b.WriteString(p.Detail)
	}
	if p.Identifier != nil {
		fmt.Fprintf(&b, " [%s]", p.Identifier.Value)
	}
	if p.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", p.Status)
	}
	for i, sp := range p.Subproblems {
		if i == 0 {
			b.WriteString("; subproblems:")
		}
		b.WriteString(" ")
		b.WriteString(strings.TrimPrefix(sp.Error(), "acme: "))
		if i < len(p.Subproblems)-1 {
			b.WriteString(";")
		}
	}
	return b.String()
}

// Is reports whether target is a *Problem of the same type. Only the type is
// compared, case-insensitively and ignoring its namespace, so that
// errors.Is(err, ErrRateLimited) matches however the server spells it. A
// compound problem also matches the type of any of its subproblems.
func (p *Problem) Is(target error) bool {
	t, ok := target.(*Problem)
	if !ok || t == nil {
		return false
	}
	k := t.kind()
	if k == "" {
		return false
	}
	if p.kind() == k {
		return true
	}
	for i := range p.Subproblems {
		if p.Subproblems[i].kind() == k {
			return true
		}
	}
	return false
}

// LogValue implements [slog.LogValuer].
func (p *Problem) LogValue() slog.Value {
	attrs := []slog.Attr{slog.String("type", p.Type)}
	if p.Detail != "" {
		attrs = append(attrs, slog.String("detail", p.Detail))
	}
	if p.Status != 0 {
		attrs = append(attrs, slog.Int("status", p.Status))
	}
	if p.RetryAfter > 0 {
		attrs = append(attrs, slog.Duration("retry_after", p.RetryAfter))
	}
	if len(p.Subproblems) > 0 {
		attrs = append(attrs, slog.Int("subproblems", len(p.Subproblems)))
	}
	return slog.GroupValue(attrs...)
}

// IsRetryable reports whether err is a server-side condition worth retrying
// later: a rate limit, an internal server error or a 5xx response.
func IsRetryable(err error) bool {
	var p *Problem
	if !errors.As(err, &p) {
		return false
	}
	return p.Is(ErrRateLimited) || p.Is(ErrServerInternal) || p.Status >= 500
}
