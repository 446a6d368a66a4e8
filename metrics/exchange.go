package metrics

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/tlsmint/tlsmint/acme"
)

// ObserveExchange implements [acme.Observer]: set Manager.ACMEObserver to
// the collector. It counts the request and its latency, and notes the
// start of an issuance at a newOrder. It is safe for concurrent use and
// does not block.
func (c *Collector) ObserveExchange(ex acme.Exchange) {
	dir, op := labelValue(ex.Directory), labelValue(ex.Operation)
	c.requests.WithLabelValues(dir, op, statusLabel(ex.Status), problemLabel(ex.ProblemType)).Inc()
	c.requestDuration.WithLabelValues(dir, op).Observe(max(ex.Latency, 0).Seconds())
	if ex.Operation == acme.OpNewOrder {
		for _, id := range ex.Identifiers {
			c.started(id.Value, ex.Time)
		}
	}
}

// labelValue returns s as a label value: itself when it is valid UTF-8,
// which Prometheus requires of every label value (client_golang panics on
// any other), else with each invalid byte written as \xNN, so that two
// such values stay two series. Label values come from configuration (a
// directory URL, a watchdog target) and from storage, never checked for
// UTF-8 on the way.
func labelValue(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			fmt.Fprintf(&b, `\x%02x`, s[i])
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// statusLabel is the status label: the HTTP status, "none" when no
// response came.
func statusLabel(status int) string {
	if status <= 0 {
		return "none"
	}
	if status < 100 || status > 599 {
		return "other"
	}
	return strconv.Itoa(status)
}

// problemLabel is the problem label of a problem type: its ACME error
// name (RFC 8555 section 6.7, RFC 9773, the profiles extension) such as
// "rateLimited"; "other" outside the ACME namespace or for a name not in
// those documents, which the CA chose freely, so that the label stays
// bounded; empty for none.
func problemLabel(typ string) string {
	if typ == "" {
		return ""
	}
	const ns = "urn:ietf:params:acme:error:"
	if len(typ) <= len(ns) || !strings.EqualFold(typ[:len(ns)], ns) {
		return "other"
	}
	switch name := strings.ToLower(typ[len(ns):]); name {
	case "caa", "compound", "connection", "dns", "malformed", "tls", "unauthorized":
		return name
	case "accountdoesnotexist":
		return "accountDoesNotExist"
	case "alreadyreplaced":
		return "alreadyReplaced"
	case "alreadyrevoked":
		return "alreadyRevoked"
	case "badcsr":
		return "badCSR"
	case "badnonce":
		return "badNonce"
	case "badpublickey":
		return "badPublicKey"
	case "badrevocationreason":
		return "badRevocationReason"
	case "badsignaturealgorithm":
		return "badSignatureAlgorithm"
	case "externalaccountrequired":
		return "externalAccountRequired"
	case "incorrectresponse":
		return "incorrectResponse"
	case "invalidcontact":
		return "invalidContact"
	case "invalidprofile":
		return "invalidProfile"
	case "ordernotready":
		return "orderNotReady"
	case "ratelimited":
		return "rateLimited"
	case "rejectedidentifier":
		return "rejectedIdentifier"
	case "serverinternal":
		return "serverInternal"
	case "unsupportedcontact":
		return "unsupportedContact"
	case "unsupportedidentifier":
		return "unsupportedIdentifier"
	case "useractionrequired":
		return "userActionRequired"
	}
	return "other"
}
