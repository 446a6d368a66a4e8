package metrics

import (
	"net/http"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tlsmint/tlsmint/internal/clientnet"
	"github.com/tlsmint/tlsmint/record"
)

// maxOperations bounds the operation label of tlsmint_decisions_total:
// operations past it are counted as "other".
const maxOperations = 128

// maxTenants bounds the tenant label of
// tlsmint_relay_certificates_issued_total: tenants past it are counted as
// "other".
const maxTenants = 1000

// maxNetworks bounds the network label of
// tlsmint_relay_unauthenticated_refusals_total: networks past it are
// counted as "other".
const maxNetworks = 1000

// decisions counts decision records by operation, outcome and problem,
// the relay's issued certificates by tenant, and its refusals of
// requests without a valid account by problem and source network.
type decisions struct {
	total    *prometheus.CounterVec
	issued   *prometheus.CounterVec
	unauth   *prometheus.CounterVec
	mu       sync.Mutex
	ops      map[string]bool // operation labels in use
	tenants  map[string]bool // tenant labels in use
	networks map[string]bool // network labels in use
}

func newDecisions(labels prometheus.Labels) *decisions {
	return &decisions{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			ConstLabels: labels,
			Name:        "tlsmint_decisions_total",
			Help:        "Decisions recorded for the audit trail, by operation (such as relay.newOrder, relay.finalize, relay.issue), outcome (ok, failure, refused) and problem type (the ACME error name, other for a type outside the ACME namespace, empty for none).",
		}, []string{"operation", "outcome", "problem"}),
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			ConstLabels: labels,
			Name:        "tlsmint_relay_certificates_issued_total",
			Help:        "Certificates the ACME relay issued to its downstream clients (relay.issue decisions that succeeded), by tenant (empty for accounts without one, other past 1000 tenants).",
		}, []string{"tenant"}),
		unauth: prometheus.NewCounterVec(prometheus.CounterOpts{
			ConstLabels: labels,
			Name:        "tlsmint_relay_unauthenticated_refusals_total",
			Help:        "Requests the ACME relay refused that carried no valid account (bad JWS, unknown kid, no or unknown EAB key), by problem type and source network (IPv4 /24, IPv6 /48; other past 1000 networks). The audit trail keeps only a sample of them.",
		}, []string{"problem", "network"}),
		ops:      map[string]bool{},
		tenants:  map[string]bool{},
		networks: map[string]bool{},
	}
}

// ObserveDecision counts one decision record of the audit trail: set
// relay.Server.OnDecision to it, so that every request the relay accepts
// or refuses, and every upstream issuance, is counted in
// tlsmint_decisions_total{operation,outcome,problem}, and each certificate
// the relay issued in tlsmint_relay_certificates_issued_total{tenant}
// (at most 1000 tenants apart, the others, and a tenant longer than 128
// bytes or not valid UTF-8, as "other"), and each request the relay
// refused without a valid account (a relay.* refusal with no Account,
// admin requests apart) in
// tlsmint_relay_unauthenticated_refusals_total{problem,network}. Records of other
// kinds are ignored. At most 128 operation names are kept apart; others
// are counted as "other". It is safe for concurrent use and does not
// block.
func (c *Collector) ObserveDecision(r record.Audit) {
	if r.Kind != "" && r.Kind != "decision" {
		return
	}
	c.decisions.total.WithLabelValues(c.decisions.operation(r.Operation), outcomeLabel(r.Outcome), problemLabel(r.Problem)).Inc()
	if r.Operation == "relay.issue" && r.Outcome == "ok" {
		c.decisions.issued.WithLabelValues(c.decisions.tenant(r.Tenant)).Inc()
	}
	if r.Outcome == "refused" && r.Account == "" && strings.HasPrefix(r.Operation, "relay.") && !strings.HasPrefix(r.Operation, "relay.admin.") {
		c.decisions.unauth.WithLabelValues(problemLabel(r.Problem), c.decisions.network(r.Source)).Inc()
	}
}

// network returns the label of a source address: its IPv4 /24 or IPv6
// /48 while fewer than maxNetworks are in use (or it is one of them),
// else "other"; "other" also for what is not an address.
func (d *decisions) network(source string) string {
	n := clientnet.Of(source)
	if n == clientnet.Other {
		return n
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.networks[n] {
		return n
	}
	if len(d.networks) >= maxNetworks {
		return clientnet.Other
	}
	d.networks[n] = true
	return n
}

// tenant returns the label of a tenant: itself while fewer than
// maxTenants are in use (or it is one of them), else "other"; "other"
// also for a tenant longer than 128 bytes or not valid UTF-8.
func (d *decisions) tenant(t string) string {
	if len(t) > 128 || !utf8.ValidString(t) {
		return "other"
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.tenants[t] {
		return t
	}
	if len(d.tenants) >= maxTenants {
		return "other"
	}
	d.tenants[t] = true
	return t
}

// operation returns the label of op: op itself when it is a short word
// of letters, digits, '.', '-' and '_' and fewer than maxOperations are
// in use, else "other".
func (d *decisions) operation(op string) string {
	if op == "" || len(op) > 64 {
		return "other"
	}
	for i := 0; i < len(op); i++ {
		b := op[i]
		if !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '.' || b == '-' || b == '_') {
			return "other"
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ops[op] {
		return op
	}
	if len(d.ops) >= maxOperations {
		return "other"
	}
	d.ops[op] = true
	return op
}

// outcomeLabel is the outcome label: ok, failure, refused, or other.
func outcomeLabel(o string) string {
	switch o {
	case "ok", "failure", "refused":
		return o
	}
	return "other"
}

// Handler returns an http.Handler serving the collector's series in the
// Prometheus exposition formats, with the Go runtime's and the process's
// standard series (go_*, process_*) and tlsmint_build_info
// ([NewBuildInfoCollector]) beside them, from a registry of its
// own. Each call builds a new registry: call it once.
func (c *Collector) Handler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(c, NewBuildInfoCollector(), collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}
