package relay

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/textclip"
)

// Problem types the relay answers with (RFC 8555, section 6.7), without
// the "urn:ietf:params:acme:error:" prefix.
const (
	probAccountDoesNotExist     = "accountDoesNotExist"
	probAlreadyReplaced         = "alreadyReplaced"
	probAlreadyRevoked          = "alreadyRevoked"
	probBadCSR                  = "badCSR"
	probBadNonce                = "badNonce"
	probBadPublicKey            = "badPublicKey"
	probBadRevocationReason     = "badRevocationReason"
	probBadSignatureAlgorithm   = "badSignatureAlgorithm"
	probConnection              = "connection"
	probDNS                     = "dns"
	probExternalAccountRequired = "externalAccountRequired"
	probIncorrectResponse       = "incorrectResponse"
	probInvalidContact          = "invalidContact"
	probInvalidProfile          = "invalidProfile"
	probMalformed               = "malformed"
	probOrderNotReady           = "orderNotReady"
	probRateLimited             = "rateLimited"
	probRejectedIdentifier      = "rejectedIdentifier"
	probServerInternal          = "serverInternal"
	probTLS                     = "tls"
	probUnauthorized            = "unauthorized"
	probUnsupportedContact      = "unsupportedContact"
	probUnsupportedIdentifier   = "unsupportedIdentifier"
)

const problemNS = "urn:ietf:params:acme:error:"

// problem returns a problem document of the given kind and HTTP status.
func problem(kind string, status int, format string, args ...any) *acme.Problem {
	return &acme.Problem{Type: problemNS + kind, Status: status, Detail: clip(fmt.Sprintf(format, args...), 1024)}
}

func malformed(format string, args ...any) *acme.Problem {
	return problem(probMalformed, http.StatusBadRequest, format, args...)
}

func unauthorized(format string, args ...any) *acme.Problem {
	return problem(probUnauthorized, http.StatusForbidden, format, args...)
}

func notFound(what string) *acme.Problem {
	return problem(probMalformed, http.StatusNotFound, "%s not found", what)
}

func internalError(format string, args ...any) *acme.Problem {
	return problem(probServerInternal, http.StatusInternalServerError, format, args...)
}

// writeProblem sends p as an application/problem+json document, with its
// Retry-After when it has one.
func writeProblem(w http.ResponseWriter, p *acme.Problem) {
	status := p.Status
	if status == 0 {
		status = http.StatusInternalServerError
		p.Status = status
	}
	if p.RetryAfter > 0 {
		w.Header().Set("Retry-After", retryAfterSeconds(p.RetryAfter))
	}
	body, err := json.Marshal(p)
	if err != nil {
		body = []byte(`{"type":"` + problemNS + probServerInternal + `","status":500}`)
		status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// retryAfterSeconds formats d as whole seconds, rounded up, at least 1.
func retryAfterSeconds(d time.Duration) string {
	s := int64((d + time.Second - 1) / time.Second)
	return strconv.FormatInt(max(s, 1), 10)
}

// clip bounds s to n bytes for errors, logs and audit records, without
// cutting a UTF-8 sequence.
func clip(s string, n int) string {
	return textclip.Ellipsis(s, n)
}
