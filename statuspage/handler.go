package statuspage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tlsmint/tlsmint/audit"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/record"
)

// DefaultTitle is the page's title when Handler.Title is empty.
const DefaultTitle = "tlsmint certificates"

// DefaultMaxRows is the page size when Handler.MaxRows is zero and the
// request gives no ?limit=: a page costs what it shows, whatever the
// number of certificates.
const DefaultMaxRows = 100

// ErrNotLoopback is the error of [LoopbackOnly] for a client that is not on
// a loopback address.
var ErrNotLoopback = errors.New("statuspage: client is not on a loopback address")

// Handler serves the status page of a Manager's certificates (and of its
// Sources'): HTML for a
// browser, JSON for scripts (?format=json, or an Accept header that
// prefers application/json). It answers GET and HEAD only, and only
// requests that Authorize accepts; any other gets 403 and no data.
//
// Set its fields before its first use and do not change them afterwards;
// use it as a pointer. A Handler is safe for concurrent use. A request
// shows one page of the certificates (?state=, ?limit=, ?after=; see
// [Query]): it reads the Manager's shared snapshot
// ([autotls.Manager.Snapshot], which loads no certificate the schedule
// index knows), loads the certificates of the rows it shows
// ([autotls.Manager.CertificatesOf]), lists its Sources' and, with Audit,
// reads the audit trail of the last [AuditWindow] — once for all the
// requests for the same page that arrive while it does, and for those
// within [ShareFor] after.
type Handler struct {
	// Manager is whose certificates are shown. Required unless Sources
	// is set: without either the page shows an error and no
	// certificates.
	Manager *autotls.Manager

	// Sources, if not empty, add their certificates to the Manager's (or
	// are the only ones shown when Manager is nil), such as the
	// certificates a relay.Server issued (relay.Server.Certificates). A
	// source that fails adds its error to the page; the others are still
	// shown.
	Sources []CertificateSource

	// Audit, if not nil, adds the audit trail's recent activity, its
	// rate-limit picture and the nodes of the fleet that wrote to it. Nil
	// leaves those sections out.
	Audit *audit.Log

	// Limits are the rate limits per issuer directory URL, as for
	// [audit.Log.RateLimits]. Nil means Let's Encrypt's for every issuer.
	Limits map[string]audit.Limits

	// Authorize decides whether a request may see the page: a non-nil
	// error refuses it with 403 (the error is not shown). Nil means
	// [LoopbackOnly]. Behind a reverse proxy on the same host every
	// request comes from loopback: set Authorize then.
	Authorize func(*http.Request) error

	// Now returns the current time, by which states and days left are
	// judged. Nil means time.Now.
	Now func() time.Time

	// Title is the page's heading. Empty means DefaultTitle.
	Title string

	// Refresh, if positive, makes browsers reload the page at this
	// interval (a meta refresh; no JavaScript). Zero means never.
	Refresh time.Duration

	// MaxRows is the page size: the certificates the HTML page and the
	// JSON list when the request gives no ?limit= (see [Query]); the
	// summary counts every certificate, and ?after= (Status.Next)
	// continues with the next page. Zero means DefaultMaxRows; negative,
	// every certificate on one page, each loaded — for small fleets only.
	MaxRows int

	// source, in tests, replaces the Manager and the Sources: the page
	// lists what it returns.
	source func(context.Context) ([]record.Certificate, error)

	once    sync.Once
	page    *page
	err     error
	share   shared
	classes classes
}

// A CertificateSource lists certificates for the page.
// [autotls.Manager] is one; so is relay.Server (package relay), which lists
// the certificates it issued to its downstream clients.
type CertificateSource interface {
	Certificates(ctx context.Context) ([]record.Certificate, error)
}

// LoopbackOnly accepts requests whose RemoteAddr is a loopback address
// (127.0.0.0/8 or ::1) and refuses every other with [ErrNotLoopback]. It is
// the default of [Handler.Authorize].
func LoopbackOnly(r *http.Request) error {
	host := r.RemoteAddr
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	addr, err := netip.ParseAddr(host)
	if err != nil || !addr.Unmap().IsLoopback() {
		return fmt.Errorf("%w: %q", ErrNotLoopback, r.RemoteAddr)
	}
	return nil
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *Handler) title() string {
	if h.Title != "" {
		return h.Title
	}
	return DefaultTitle
}

// baseCSP is the policy of every response; HTML adds its stylesheet.
const baseCSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// ServeHTTP serves the page or its JSON.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", baseCSP)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Referrer-Policy", "no-referrer")
	hdr.Set("X-Frame-Options", "DENY")
	authorize := h.Authorize
	if authorize == nil {
		authorize = LoopbackOnly
	}
	if err := authorize(r); err != nil {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	asJSON, err := wantsJSON(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	hdr.Add("Vary", "Accept")
	q, err := parseQuery(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	st, err := h.sharedStatus(r.Context(), q)
	switch {
	case errors.Is(err, ErrBadQuery):
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	case err != nil:
		http.Error(w, "statuspage: the request ended before the status was read", http.StatusServiceUnavailable)
		return
	}

	var body bytes.Buffer
	if asJSON {
		enc := json.NewEncoder(&body)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			http.Error(w, "statuspage: encoding the status failed", http.StatusInternalServerError)
			return
		}
		hdr.Set("Content-Type", "application/json; charset=utf-8")
	} else {
		p, err := h.parsed()
		if err == nil {
			err = p.render(&body, st, h.Refresh, h.Audit != nil, q)
		}
		if err != nil {
			http.Error(w, "statuspage: rendering the page failed", http.StatusInternalServerError)
			return
		}
		hdr.Set("Content-Security-Policy", baseCSP+"; style-src "+p.styleHash)
		hdr.Set("Content-Type", "text/html; charset=utf-8")
	}
	hdr.Set("Content-Length", strconv.Itoa(body.Len()))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body.Bytes())
	}
}

func (h *Handler) parsed() (*page, error) {
	h.once.Do(func() { h.page, h.err = newPage() })
	return h.page, h.err
}

// wantsJSON decides between HTML and JSON: ?format=json or ?format=html
// first, else the Accept header's preference (its most specific media
// range for each), HTML on a tie or without one.
func wantsJSON(r *http.Request) (bool, error) {
	switch f := r.URL.Query().Get("format"); f {
	case "json":
		return true, nil
	case "html":
		return false, nil
	case "":
	default:
		// At most 64 characters of it are echoed back, quoted.
		return false, fmt.Errorf("statuspage: unknown format %.64q (want json or html)", f)
	}
	accept := strings.Join(r.Header.Values("Accept"), ",")
	if strings.TrimSpace(accept) == "" {
		return false, nil
	}
	// For each format, the q of the most specific matching range
	// (2 exact, 1 type/*, 0 */*).
	type pref struct {
		level int
		q     float64
	}
	jsonP, htmlP := pref{-1, 0}, pref{-1, 0}
	set := func(p *pref, level int, q float64) {
		if level > p.level || (level == p.level && q > p.q) {
			*p = pref{level, q}
		}
	}
	for _, rng := range strings.Split(accept, ",") {
		params := strings.Split(rng, ";")
		mt := strings.ToLower(strings.TrimSpace(params[0]))
		q := 1.0
		for _, p := range params[1:] {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil && f >= 0 && f <= 1 {
					q = f
				}
			}
		}
		switch mt {
		case "application/json":
			set(&jsonP, 2, q)
		case "text/html", "application/xhtml+xml":
			set(&htmlP, 2, q)
		case "application/*":
			set(&jsonP, 1, q)
		case "text/*":
			set(&htmlP, 1, q)
		case "*/*":
			set(&jsonP, 0, q)
			set(&htmlP, 0, q)
		}
	}
	return jsonP.q > htmlP.q, nil
}
