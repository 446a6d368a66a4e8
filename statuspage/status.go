package statuspage

import (
	"cmp"
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/record"
)

// Bounds of what a page shows from the audit trail.
const (
	// AuditWindow is how far back the page reads the audit trail for
	// recent activity and nodes.
	AuditWindow = 7 * 24 * time.Hour
	// MaxActivity is the number of recent records shown, newest first.
	MaxActivity = 50
	// maxNodeRecords caps the records read to describe the nodes.
	maxNodeRecords = 100000
)

// Status is everything the page shows, and what ?format=json returns. It
// never holds key material: certificates are described by names, serial
// and dates only.
type Status struct {
	// Title is Handler.Title (or its default).
	Title string `json:"title"`
	// Now is the time the status was taken.
	Now time.Time `json:"now"`
	// Certificates are one page of the certificates (see [Query]): at most
	// the query's limit, in the page's order — names without a
	// certificate first, then the soonest NotAfter first, then by name —
	// after the query's cursor, in its state if it names one.
	Certificates []Certificate `json:"certificates"`
	// Filter is the state the page is limited to, empty for every state.
	Filter State `json:"filter,omitempty"`
	// Total is the number of certificates in Filter's state (every
	// certificate without one), on every page.
	Total int `json:"total"`
	// Next is the cursor of the next page (Query.After, ?after=), empty
	// on the last.
	Next string `json:"next,omitempty"`
	// Attention, on the first page of every state only, lists the first
	// MaxAttention revoked, expired and failing certificates, the worst
	// state first, that the first MaxAttention rows of Certificates do
	// not show already.
	Attention []Certificate `json:"attention,omitempty"`
	// Counts is the number of certificates per state; states without any
	// are left out. The Manager's certificates are counted, and found by
	// Filter, in the state their summary in the snapshot (SnapshotAt)
	// gives when the Handler first reads that snapshot; each certificate
	// of the page is then loaded and judged at Now, so a certificate
	// renewed since the snapshot may show a state other than Filter's.
	Counts map[State]int `json:"counts"`
	// SnapshotAt is when the Manager's snapshot was taken
	// (autotls.Manager.Snapshot), zero without a Manager.
	SnapshotAt time.Time `json:"snapshot_at,omitzero"`
	// Activity is the newest MaxActivity records of the audit trail
	// within AuditWindow, newest first; nil without Handler.Audit.
	Activity []record.Audit `json:"activity,omitempty"`
	// RateLimits is the audit trail's rate-limit picture, the closest to
	// its limit first; nil without Handler.Audit.
	RateLimits []RateLimit `json:"rate_limits,omitempty"`
	// Nodes are the nodes that wrote to the audit trail within
	// AuditWindow, by name; nil without Handler.Audit.
	Nodes []Node `json:"nodes,omitempty"`
	// Served is what a watchdog found served (package watchdog with
	// Watchdog.AuditLog set): the newest probe record of each target and
	// name within AuditWindow, failures first; nil without Handler.Audit.
	// A watchdog records healthy targets only when they recover, so a
	// target never in trouble is not listed.
	Served []record.Audit `json:"served,omitempty"`
	// Errors are what could not be read (storage, the audit trail); the
	// rest of the status is still shown.
	Errors []string `json:"errors,omitempty"`
}

// Certificate is one managed certificate (or a managed name without one)
// as the Manager ([autotls.Manager.CertificatesOf], for the rows a page
// shows) or a [CertificateSource] reports it — its fields mirror
// [record.Certificate] — with its State and days left.
type Certificate struct {
	// Name is the name the certificate is managed under; Names its
	// subject alternative names (empty without a certificate).
	Name  string   `json:"name"`
	Names []string `json:"names,omitempty"`
	// Issuer is the CA's ACME directory URL.
	Issuer string `json:"issuer"`
	// Serial is in hex; empty, like NotBefore and NotAfter zero, when
	// there is no certificate.
	Serial    string    `json:"serial,omitempty"`
	NotBefore time.Time `json:"not_before,omitzero"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	// State is the verdict at Status.Now.
	State State `json:"state"`
	// DaysLeft is the whole days until NotAfter, rounded down: 0 in the
	// last day, negative once expired; 0 as well when NotAfter is zero.
	DaysLeft int `json:"days_left"`
	// RenewAt is the planned renewal (zero when none is planned) and
	// RenewReason why then (autotls.ReasonSchedule, ReasonARI,
	// ReasonARIPast).
	RenewAt     time.Time `json:"renew_at,omitzero"`
	RenewReason string    `json:"renew_reason,omitempty"`
	// RenewBy is the deadline the certificate is judged by: past it, it
	// is expiring (record.Certificate.RenewBy, or for a certificate
	// the Manager does not plan autotls.RenewalDeadline); zero when there
	// is none.
	RenewBy time.Time `json:"renew_by,omitzero"`
	// ARIWindowStart and ARIWindowEnd are the CA's suggested window, zero
	// when it offers none; ARIExplanationURL its explanation, and
	// NextARIPoll when the Manager asks again.
	ARIWindowStart    time.Time `json:"ari_window_start,omitzero"`
	ARIWindowEnd      time.Time `json:"ari_window_end,omitzero"`
	ARIExplanationURL string    `json:"ari_explanation_url,omitempty"`
	NextARIPoll       time.Time `json:"next_ari_poll,omitzero"`
	// LastError is the CA's or the Manager's last failure, at LastErrorAt;
	// empty when the last attempt succeeded. BackoffUntil is when the next
	// attempt may be made, zero when none is pending.
	LastError    string    `json:"last_error,omitempty"`
	LastErrorAt  time.Time `json:"last_error_at,omitzero"`
	BackoffUntil time.Time `json:"backoff_until,omitzero"`
	// DNSRecords are the dns-persist-01 records the operator must
	// publish for the name (record.Certificate.DNSRecords): a zone
	// file line each, with why.
	DNSRecords []DNSRecord `json:"dns_records,omitempty"`
	// Stored reports whether the certificate is in storage, InMemory
	// whether it is cached, Managed whether the name was given to Manage.
	Stored   bool `json:"stored"`
	InMemory bool `json:"in_memory"`
	Managed  bool `json:"managed"`
	// Tenant is the relay tenant the certificate was issued to (from a
	// relay's Handler.Sources); empty for a Manager's.
	Tenant string `json:"tenant,omitempty"`
	// Revoked reports that the certificate was revoked (State is then
	// StateRevoked).
	Revoked bool `json:"revoked,omitempty"`
}

// DNSRecord is a DNS record to publish ([record.DNS]).
type DNSRecord struct {
	// Line is the record as a zone file line.
	Line string `json:"line"`
	// Name, Type and Value are its parts (Value unquoted).
	Name  string `json:"name"`
	Type  string `json:"type"`
	Value string `json:"value"`
	// Reason is what the nameservers answer instead, or when it ends.
	Reason string `json:"reason,omitempty"`
}

// RateLimit is one counted rate limit ([audit.Usage]).
type RateLimit struct {
	// Issuer is the CA's directory URL.
	Issuer string `json:"issuer"`
	// Kind is audit.UsageNewOrders or audit.UsageCertificates; Key the
	// account URL or the registered domain.
	Kind string `json:"kind"`
	Key  string `json:"key"`
	// Count is what the trail holds within the window; Limit the CA's.
	Count int `json:"count"`
	Limit int `json:"limit"`
	// WindowSeconds is the length of the limit's window.
	WindowSeconds int64 `json:"window_seconds"`
	// Frees is when the oldest counted use leaves the window.
	Frees time.Time `json:"frees,omitzero"`
	// Near reports that at least nine tenths of the limit are used.
	Near bool `json:"near"`
}

// Node is one process of a fleet as the audit trail shows it.
type Node struct {
	// Name is the node's audit.Log.Node.
	Name string `json:"name"`
	// LastSeen is the time of its newest record.
	LastSeen time.Time `json:"last_seen"`
	// Records and Failures count its records within AuditWindow.
	Records  int `json:"records"`
	Failures int `json:"failures"`
	// Holds are the names this node obtained, renewed or replaced
	// within AuditWindow and did not see expire since, sorted.
	Holds []string `json:"holds,omitempty"`
}

// status gathers the Status at now: the page q selects, the counts of
// every state, and the audit trail's sections.
func (h *Handler) status(ctx context.Context, now time.Time, q Query) (*Status, error) {
	st := &Status{Title: h.title(), Now: now, Counts: map[State]int{}, Filter: q.State}
	limit := h.pageSize(q)
	var (
		snap *autotls.Snapshot
		mp   *managerPage
		cl   *classified
	)
	if h.source == nil && h.Manager != nil {
		s, err := h.Manager.Snapshot(ctx)
		if err != nil {
			st.Errors = append(st.Errors, err.Error())
		}
		if s != nil {
			snap = s
			st.SnapshotAt = s.At()
			cl = h.classify(s, now)
			for state, n := range cl.counts() {
				st.Counts[state] += n
			}
			mp = &managerPage{snap: s}
			if q.State != "" {
				mp.filtered, mp.rows = true, cl.byState[q.State]
			}
			if err := mp.seek(q.After); err != nil {
				return nil, err
			}
		}
	}
	infos, errs := h.sourceInfos(ctx)
	for _, err := range errs {
		st.Errors = append(st.Errors, err.Error())
	}
	extra := make([]Certificate, 0, len(infos))
	var problems []Certificate
	for _, info := range infos {
		c := certificateOf(info, now)
		st.Counts[c.State]++
		if attention(c.State) {
			problems = append(problems, c)
		}
		if q.State == "" || c.State == q.State {
			extra = append(extra, c)
		}
	}
	sortCertificates(extra)
	sortCertificates(problems)
	st.Total = len(extra)
	if mp != nil {
		st.Total += mp.total()
	}
	picks, more := choosePage(mp, extra, q.After, limit)
	certs, err := h.load(ctx, snap, picks, now)
	if err != nil {
		st.Errors = append(st.Errors, err.Error())
	}
	st.Certificates = certs
	if more && len(picks) > 0 {
		st.Next = picks[len(picks)-1].cursor
	}
	if q.State == "" && q.After == "" {
		if err := h.addAttention(ctx, st, snap, cl, problems, now); err != nil {
			st.Errors = append(st.Errors, err.Error())
		}
	}
	if h.Audit != nil {
		h.auditStatus(ctx, st, now)
	}
	return st, nil
}

// attention reports whether a state is one Status.Attention lists.
func attention(s State) bool {
	return s == StateRevoked || s == StateExpired || s == StateFailing
}

// sortCertificates sorts as a page lists: names without a certificate
// first, then the soonest NotAfter, then by name, tenant and serial.
func sortCertificates(certs []Certificate) {
	slices.SortFunc(certs, func(a, b Certificate) int {
		return comparePageKeys(keyOf(&a), keyOf(&b))
	})
}

// addAttention fills st.Attention: the first MaxAttention revoked, expired
// and failing certificates, the worst state first, leaving out those the
// first MaxAttention rows of the page show already.
func (h *Handler) addAttention(ctx context.Context, st *Status, snap *autotls.Snapshot, cl *classified, problems []Certificate, now time.Time) error {
	shown := map[string]bool{}
	for i, c := range st.Certificates {
		if i == MaxAttention {
			break
		}
		shown[c.Name+"\x00"+c.Tenant] = true
	}
	var picks []pick
	for _, state := range []State{StateRevoked, StateExpired, StateFailing} {
		if cl != nil {
			for _, pos := range cl.byState[state] {
				if len(picks) == MaxAttention {
					break
				}
				if !shown[snap.Name(int(pos))+"\x00"] {
					picks = append(picks, pick{fromManager: true, pos: int(pos)})
				}
			}
		}
		for _, c := range problems {
			if len(picks) == MaxAttention {
				break
			}
			if c.State == state && !shown[c.Name+"\x00"+c.Tenant] {
				picks = append(picks, pick{cert: c})
			}
		}
	}
	if len(picks) == 0 {
		return nil
	}
	certs, err := h.load(ctx, snap, picks, now)
	st.Attention = certs
	return err
}

// sourceInfos lists the Sources' certificates (or the test's source),
// with the errors of those that failed.
func (h *Handler) sourceInfos(ctx context.Context) ([]record.Certificate, []error) {
	if h.source != nil {
		infos, err := h.source(ctx)
		if err != nil {
			return infos, []error{err}
		}
		return infos, nil
	}
	if h.Manager == nil && len(h.Sources) == 0 {
		return nil, []error{errors.New("statuspage: Handler.Manager is nil")}
	}
	var infos []record.Certificate
	var errs []error
	for _, src := range h.Sources {
		if src == nil {
			continue
		}
		got, err := src.Certificates(ctx)
		infos = append(infos, got...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return infos, errs
}

// pageSize is the number of certificates q's page lists (negative: all).
func (h *Handler) pageSize(q Query) int {
	switch {
	case q.Limit > 0:
		return min(q.Limit, MaxLimit)
	case q.Limit < 0 && h.MaxRows < 0:
		return -1
	case h.MaxRows > 0:
		return h.MaxRows
	case h.MaxRows < 0 && q.Limit == 0:
		return -1
	}
	return DefaultMaxRows
}

func certificateOf(info record.Certificate, now time.Time) Certificate {
	c := Certificate{
		Name: info.Name, Names: info.Names, Issuer: info.Issuer, Serial: info.Serial,
		NotBefore: info.NotBefore, NotAfter: info.NotAfter,
		State:   stateOf(info, now),
		RenewAt: info.RenewAt, RenewReason: info.RenewReason, RenewBy: renewByOf(info),
		ARIWindowStart: info.ARIWindowStart, ARIWindowEnd: info.ARIWindowEnd,
		ARIExplanationURL: info.ARIExplanationURL, NextARIPoll: info.NextARIPoll,
		LastError: info.LastError, LastErrorAt: info.LastErrorAt, BackoffUntil: info.BackoffUntil,
		DNSRecords: dnsRecords(info.DNSRecords),
		Stored:     info.Stored, InMemory: info.InMemory, Managed: info.Managed,
		Tenant: info.Tenant, Revoked: info.Revoked,
	}
	if !c.NotAfter.IsZero() {
		c.DaysLeft = daysLeft(c.NotAfter, now)
	}
	return c
}

// auditStatus adds the audit trail's activity, rate limits and nodes.
func (h *Handler) auditStatus(ctx context.Context, st *Status, now time.Time) {
	recs, err := h.Audit.Query(ctx, record.AuditFilter{Since: now.Add(-AuditWindow), Until: now.Add(time.Second), Limit: maxNodeRecords})
	if err != nil {
		st.Errors = append(st.Errors, err.Error())
	}
	n := min(len(recs), MaxActivity)
	st.Activity = make([]record.Audit, 0, n)
	for i := len(recs) - 1; i >= len(recs)-n; i-- {
		st.Activity = append(st.Activity, recs[i])
	}
	st.Nodes = nodesOf(recs)
	st.Served = servedOf(recs)
	markRevoked(st)

	usage, err := h.Audit.RateLimits(ctx, now, h.Limits)
	if err != nil && !slices.Contains(st.Errors, err.Error()) {
		st.Errors = append(st.Errors, err.Error()) // once when both reads fail alike
	}
	st.RateLimits = make([]RateLimit, 0, len(usage))
	for _, u := range usage {
		st.RateLimits = append(st.RateLimits, RateLimit{
			Issuer: u.Issuer, Kind: u.Kind, Key: u.Key, Count: u.Count, Limit: u.Limit,
			WindowSeconds: int64(u.Window / time.Second), Frees: u.Frees, Near: u.Near(),
		})
	}
}

// markRevoked shows as revoked each certificate whose serial the newest
// probe of a watchdog found revoked (its CRL lists it), and recounts.
func markRevoked(st *Status) {
	revoked := map[string]bool{}
	for _, r := range st.Served {
		if r.Serial != "" && slices.Contains(strings.Split(r.Problem, ","), "revoked") {
			revoked[r.Serial] = true
		}
	}
	for i := range st.Certificates {
		c := &st.Certificates[i]
		if revoked[c.Serial] && c.State != StateRevoked {
			st.Counts[c.State]--
			if st.Counts[c.State] == 0 {
				delete(st.Counts, c.State)
			}
			c.State, c.Revoked = StateRevoked, true
			st.Counts[StateRevoked]++
		}
	}
}

// servedOf returns the newest probe record of each target and name in
// recs (oldest first): failures first, then by target and name.
func servedOf(recs []record.Audit) []record.Audit {
	type key struct{ target, name string }
	latest := map[key]record.Audit{}
	for _, r := range recs {
		if r.Kind != record.KindProbe {
			continue
		}
		k := key{target: r.Target}
		if len(r.Names) > 0 {
			k.name = r.Names[0]
		}
		latest[k] = r
	}
	out := make([]record.Audit, 0, len(latest))
	for _, r := range latest {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b record.Audit) int {
		af, bf := a.Outcome != record.OutcomeOK, b.Outcome != record.OutcomeOK
		switch {
		case af && !bf:
			return -1
		case bf && !af:
			return 1
		}
		return cmp.Or(cmp.Compare(a.Target, b.Target), slices.Compare(a.Names, b.Names))
	})
	return out
}

// nodesOf describes the nodes of recs (oldest first).
func nodesOf(recs []record.Audit) []Node {
	nodes := map[string]*Node{}
	holds := map[string]map[string]bool{}
	for _, r := range recs {
		n := nodes[r.Node]
		if n == nil {
			n = &Node{Name: r.Node}
			nodes[r.Node] = n
			holds[r.Node] = map[string]bool{}
		}
		n.Records++
		if r.Outcome == record.OutcomeFailure {
			n.Failures++
		}
		if r.Time.After(n.LastSeen) {
			n.LastSeen = r.Time
		}
		if r.Kind != record.KindDecision {
			continue
		}
		switch autotls.EventType(r.Operation) {
		case autotls.EventObtained, autotls.EventRenewed, autotls.EventReplaced, autotls.EventLoaded:
			for _, name := range r.Names {
				holds[r.Node][name] = true
			}
		case autotls.EventExpired:
			for _, name := range r.Names {
				delete(holds[r.Node], name)
			}
		}
	}
	out := make([]Node, 0, len(nodes))
	for name, n := range nodes {
		for h := range holds[name] {
			n.Holds = append(n.Holds, h)
		}
		slices.Sort(n.Holds)
		out = append(out, *n)
	}
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// issuerHost shortens a directory URL to its host for display.
func issuerHost(directory string) string {
	u, err := url.Parse(directory)
	if err != nil || u.Host == "" {
		return directory
	}
	return u.Host
}

func dnsRecords(in []record.DNS) []DNSRecord {
	if len(in) == 0 {
		return nil
	}
	out := make([]DNSRecord, len(in))
	for i, r := range in {
		out[i] = DNSRecord{Line: r.String(), Name: r.Name, Type: r.Type, Value: r.Value, Reason: r.Reason}
	}
	return out
}

// CertificateOf describes info as the page does, with its State and days
// left judged at now: for a command that shows one certificate
// (autotls.Manager.CertificatesOf) as the page would.
func CertificateOf(info record.Certificate, now time.Time) Certificate {
	return certificateOf(info, now)
}
