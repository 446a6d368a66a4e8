package metrics

import (
	"strconv"
	"strings"

	"github.com/tlsmint/tlsmint/acme"
)

// ObserveExchange implements [acme.Observer]: set Manager.ACMEObserver to
// the collector. It counts the request and its latency, and notes the
// start of an issuance at a newOrder. It is safe for concurrent use and
// does not block.
func (c *Collector) ObserveExchange(ex acme.Exchange) {
	c.requests.WithLabelValues(ex.Directory, ex.Operation, statusLabel(ex.Status), problemLabel(ex.ProblemType)).Inc()
	c.requestDuration.WithLabelValues(ex.Directory, ex.Operation).Observe(max(ex.Latency, 0).Seconds())
	if ex.Operation == acme.OpNewOrder {
		for _, id := range ex.Identifiers {
			c.started(id.Value, ex.Time)
		}
	}
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
