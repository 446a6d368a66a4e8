package relay

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/solvers"
)

// An Upstream is a CA the relay obtains certificates from, with the
// relay's own account there. The downstream client's CSR is finalized
// upstream as it is: the client keeps its private key.
//
// Set the fields before the Server's first request and do not change
// them afterwards.
type Upstream struct {
	// Name identifies the upstream in stored certificates, logs and audit
	// records. Empty means Client.DirectoryURL. Renaming an upstream makes
	// the certificates it issued unreachable for revocation and renewal
	// information.
	Name string

	// Client is the relay's ACME client for this CA, with the relay's
	// account key. Required. Its Observer (for example an audit.Log)
	// sees every upstream exchange.
	Client *acme.Client

	// Account is registered (or looked up, when the key already has an
	// account) before the first order when Client.AccountURL is empty:
	// set TermsOfServiceAgreed, and ExternalAccountBinding for a CA that
	// needs it.
	Account acme.Account

	// Solvers prove control of the names to this CA: for example dns-01
	// through a libdns provider of a zone the downstream names delegate
	// their _acme-challenge CNAMEs to, or none at all for a CA that trusts
	// the relay. Required unless the CA's authorizations are valid
	// already.
	Solvers map[string]acme.Solver

	// ChallengeTypes orders the types in Solvers by preference; empty
	// means acme.Client.Obtain's default.
	ChallengeTypes []string

	mu         sync.Mutex
	registered bool
}

func (u *Upstream) name() string {
	if u.Name != "" {
		return u.Name
	}
	return u.Client.DirectoryURL
}

// ensureAccount registers the relay's account at the CA once.
func (u *Upstream) ensureAccount(ctx context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.registered || u.Client.AccountURL != "" {
		return nil
	}
	if _, err := u.Client.Register(ctx, u.Account); err != nil {
		return fmt.Errorf("relay: registering with upstream %s: %w", u.name(), err)
	}
	u.registered = true
	return nil
}

// noSolver answers no challenge; it lets Obtain run against a CA whose
// authorizations need none (all valid already).
type noSolver struct{}

func (noSolver) Present(context.Context, acme.Challenge) error {
	return errors.New("relay: this upstream has no solver")
}
func (noSolver) CleanUp(context.Context, acme.Challenge) error { return nil }

// obtain runs the upstream issuance of one downstream order, asking for
// profile.
func (u *Upstream) obtain(ctx context.Context, o *orderRecord, profile string, onOrder func(*acme.Order)) (*acme.Certificate, error) {
	if err := u.ensureAccount(ctx); err != nil {
		return nil, err
	}
	solvers := u.Solvers
	if len(solvers) == 0 {
		solvers = map[string]acme.Solver{"none": noSolver{}}
	}
	return u.Client.Obtain(ctx, acme.ObtainRequest{
		Identifiers:    o.Identifiers,
		CSR:            o.CSR,
		Solvers:        solvers,
		ChallengeTypes: u.ChallengeTypes,
		Profile:        profile,
		Replaces:       o.Replaces,
		OnOrder:        onOrder,
	})
}

func (s *Server) upstreamTimeout() time.Duration {
	if s.UpstreamTimeout > 0 {
		return s.UpstreamTimeout
	}
	return DefaultUpstreamTimeout
}

// startIssue runs the upstream issuance of a processing order in the
// background and returns a channel closed when it has ended; resume
// carries on with an issuance that was interrupted.
func (s *Server) startIssue(o *orderRecord, resume bool) <-chan struct{} {
	done := make(chan struct{})
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		close(done)
		return done
	}
	id := o.ID
	s.running[id] = done
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.running, id)
			s.mu.Unlock()
			close(done)
		}()
		// One issuance per order across the replicas: the lock is held
		// until the outcome is recorded, and expires with a process that
		// died holding it.
		unlock, err := s.lock(s.ctx, "issue/"+id)
		if err != nil {
			s.logger().Warn("relay: another issuance of the order is under way, or the storage failed", "order", o.ID, "err", err)
			return
		}
		defer unlock()
		if resume {
			// Another process may have finished it, or be on its last
			// resumption: read it again under the lock.
			cur, err := s.claimIssue(o)
			if err != nil {
				s.logger().Error("relay: resuming an issuance failed", "order", id, "err", err)
			}
			if cur == nil {
				return
			}
			o = cur
		}
		var (
			cert *acme.Certificate
			up   *Upstream
		)
		func() {
			defer func() {
				if v := recover(); v != nil {
					s.logger().Error("relay: panic in an upstream issuance", "order", o.ID, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
					err = fmt.Errorf("relay: internal error: %v", v)
				}
			}()
			ctx, cancel := context.WithTimeout(s.ctx, s.upstreamTimeout())
			defer cancel()
			cert, up, err = s.obtainUpstream(ctx, o)
		}()
		// A panic while recording (a Storage or OnDecision that panics)
		// must not stop the process: the order then reads as interrupted.
		defer func() {
			if v := recover(); v != nil {
				s.logger().Error("relay: panic recording an upstream issuance", "order", o.ID, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			}
		}()
		s.finishIssue(o, cert, up, err)
	}()
	return done
}

// obtainUpstream asks each upstream of the order's route in turn until
// one issues.
func (s *Server) obtainUpstream(ctx context.Context, o *orderRecord) (*acme.Certificate, *Upstream, error) {
	ups, profile := s.routeFor(o.Tenant, o.Identifiers)
	if o.Profile != "" {
		profile = o.Profile
	}
	var last error
	for _, u := range ups {
		if rec, err := s.backoff(ctx, u); err == nil && !rec.Until.IsZero() {
			last = &upstreamError{name: u.name(), err: s.rateLimitedUpstream(u, rec)}
			continue
		}
		start := s.now()
		cert, err := s.obtainAt(ctx, u, o, profile)
		if err == nil {
			return cert, u, nil
		}
		if errors.Is(err, errUpstreamUnknown) {
			// The upstream may have issued: another upstream would be a
			// second certificate. The order stays processing and is
			// resumed later.
			return nil, nil, err
		}
		s.noteRateLimit(ctx, u, err)
		last = &upstreamError{name: u.name(), err: err}
		s.logger().Warn("relay: upstream issuance failed", "order", o.ID, "upstream", u.name(), "err", err)
		rec := record.Audit{
			Outcome: record.OutcomeFailure, Operation: OperationPrefix + "upstream", Issuer: u.name(),
			Tenant: o.Tenant, Names: names(o.Identifiers), Detail: clip(err.Error(), 1024), Latency: s.now().Sub(start),
		}
		var p *acme.Problem
		if errors.As(err, &p) {
			rec.Problem, rec.Status, rec.RetryAfter = p.Type, p.Status, p.RetryAfter
		}
		s.auditBackground(rec)
		if ctx.Err() != nil {
			break
		}
	}
	if last == nil {
		last = errors.New("no upstream CA")
	}
	return nil, nil, last
}

// errUpstreamUnknown marks an issuance whose upstream order's fate is
// unknown (its answer was lost and the upstream could not be asked
// since): the downstream order stays processing, to be resumed.
var errUpstreamUnknown = errors.New("relay: the upstream order's outcome is unknown")

// claimIssue reloads a processing order under its issue lock before its
// issuance is resumed: nil when it is no longer processing (another
// replica finished it). It counts the resumption; past maxResumes the
// order is invalid.
func (s *Server) claimIssue(o *orderRecord) (*orderRecord, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 30*time.Second)
	defer cancel()
	var out *orderRecord
	err := retryStorage(ctx, func() error {
		cur, unlock, err := s.lockOrder(ctx, o.ID)
		if err != nil {
			return err
		}
		defer unlock()
		out = nil
		if cur.Status != acme.StatusProcessing {
			return nil
		}
		cur.Resumes++
		if cur.Resumes > maxResumes {
			cur.Status, cur.Interrupted = acme.StatusInvalid, ""
			cur.Error = internalError("the upstream issuance was interrupted %d times and is given up; order again", maxResumes)
			s.logger().Warn("relay: an interrupted issuance is given up", "order", o.ID, "resumes", maxResumes)
			return s.save(ctx, keyOrders+o.ID, cur)
		}
		s.logger().Info("relay: resuming an interrupted issuance", "order", o.ID, "upstream_order", cur.UpstreamOrder, "interrupted", cur.Interrupted)
		cur.Interrupted = ""
		if err := s.save(ctx, keyOrders+o.ID, cur); err != nil {
			return err
		}
		out = cur
		return nil
	})
	return out, err
}

// maxResumes bounds how often an interrupted issuance is resumed.
const maxResumes = 3

// obtainAt obtains the order's certificate at u, carrying on with the
// upstream order already placed there (a resumed issuance) when there
// is one, and recovering the certificate from it when an answer is lost
// after the upstream order was placed.
func (s *Server) obtainAt(ctx context.Context, u *Upstream, o *orderRecord, profile string) (*acme.Certificate, error) {
	if o.UpstreamOrder != "" && o.UpstreamName == u.name() {
		cert, err, decided := s.fromUpstreamOrder(ctx, u, o)
		if decided {
			return cert, err
		}
		// That order issued nothing and never will: order anew.
	}
	placed := ""
	cert, err := u.obtain(ctx, o, profile, func(ord *acme.Order) {
		placed = ord.URL
		s.noteUpstreamOrder(ctx, o, u, ord.URL)
	})
	if err == nil || placed == "" || s.ctx.Err() != nil {
		return cert, err
	}
	// The upstream order exists: its finalization or download may have
	// gone through with the answer lost. Ask the upstream.
	s.logger().Info("relay: the upstream issuance failed after its order was placed; asking the upstream what became of the order", "order", o.ID, "upstream", u.name(), "upstream_order", placed, "err", err)
	// A fresh bound: the issuance's own may be what ran out.
	rctx, cancel := context.WithTimeout(s.ctx, recoverTimeout)
	defer cancel()
	got, rerr, decided := s.fromUpstreamOrder(rctx, u, o)
	switch {
	case rerr == nil && got != nil:
		s.logger().Info("relay: recovered the certificate the upstream had issued", "order", o.ID, "upstream", u.name())
		return got, nil
	case decided && errors.Is(rerr, errUpstreamUnknown):
		return nil, rerr
	}
	return nil, err
}

// recoverTimeout bounds the asking of the upstream for an order whose
// answer was lost.
const recoverTimeout = 2 * time.Minute

// noteUpstreamOrder records the upstream order placed for o. The caller
// holds the order's issue lock: while it is processing, nothing else
// writes the order, so the order lock is not taken. The write is retried
// until ctx (the issuance's) ends, holding the issuance meanwhile: the
// upstream order is not worked on before its URL is stored, and when ctx
// ends first the issuance fails there.
func (s *Server) noteUpstreamOrder(ctx context.Context, o *orderRecord, u *Upstream, url string) {
	o.UpstreamName, o.UpstreamOrder = u.name(), url
	err := retryStorage(ctx, func() error {
		cur := new(orderRecord)
		if err := s.load(ctx, keyOrders+o.ID, cur); err != nil {
			return err
		}
		cur.UpstreamName, cur.UpstreamOrder = u.name(), url
		return s.save(ctx, keyOrders+o.ID, cur)
	})
	if err != nil {
		s.logger().Warn("relay: recording the upstream order failed", "order", o.ID, "upstream_order", url, "err", err)
	}
}

// fromUpstreamOrder fetches the upstream order of o and what it issued:
// the certificate of a valid order (waiting for a processing one,
// finalizing a ready one with o's CSR). decided is false for an order
// that issued nothing and never will (pending, invalid, expired): the
// caller may order anew. An upstream that cannot be asked is
// errUpstreamUnknown, decided.
func (s *Server) fromUpstreamOrder(ctx context.Context, u *Upstream, o *orderRecord) (_ *acme.Certificate, _ error, decided bool) {
	if err := u.ensureAccount(ctx); err != nil {
		return nil, fmt.Errorf("%w: %w", errUpstreamUnknown, err), true
	}
	cl := u.Client
	ord, err := cl.GetOrder(ctx, o.UpstreamOrder)
	if err != nil {
		var p *acme.Problem
		if errors.As(err, &p) && p.Status >= 400 && p.Status < 500 {
			return nil, err, false // gone, or not this account's: nothing to recover
		}
		return nil, fmt.Errorf("%w: %w", errUpstreamUnknown, err), true
	}
	switch ord.Status {
	case acme.StatusReady:
		final, ferr := cl.FinalizeOrder(ctx, ord, o.CSR)
		if ferr != nil {
			return nil, fmt.Errorf("%w: %w", errUpstreamUnknown, ferr), true
		}
		ord = final
	case acme.StatusProcessing:
		final, werr := cl.WaitOrder(ctx, ord)
		if werr != nil {
			return nil, fmt.Errorf("%w: %w", errUpstreamUnknown, werr), true
		}
		ord = final
	}
	if ord.Status != acme.StatusValid || ord.Certificate == "" {
		return nil, fmt.Errorf("relay: upstream order %s is %s", ord.URL, ord.Status), false
	}
	chains, err := cl.FetchCertificate(ctx, ord.Certificate)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errUpstreamUnknown, err), true
	}
	if len(chains) == 0 || len(chains[0].Certificates) == 0 {
		return nil, errors.New("relay: the upstream order's certificate has no chain"), true
	}
	if err := checkLeafKey(chains[0].Leaf(), o.CSR); err != nil {
		return nil, err, true
	}
	return &acme.Certificate{Chain: chains[0], Chains: chains, Order: ord}, nil, true
}

// checkLeafKey checks that a certificate is for the key of the CSR.
func checkLeafKey(leaf *x509.Certificate, csrDER []byte) error {
	csr, err := x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return fmt.Errorf("relay: the order's CSR: %w", err)
	}
	pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(csr.PublicKey) {
		return fmt.Errorf("%w: not for the CSR's key", acme.ErrCertificateMismatch)
	}
	return nil
}

// finishIssue records the outcome of an upstream issuance. Every write
// is retried (see retryStorage) until the storage takes it: a
// certificate the upstream issued is not lost to a storage hiccup.
func (s *Server) finishIssue(o *orderRecord, cert *acme.Certificate, up *Upstream, ierr error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 30*time.Second)
	defer cancel()
	var rec *certRecord
	if ierr == nil {
		var err error
		if rec, err = s.storeCert(ctx, o, cert, up); err != nil {
			ierr = err
		}
	}
	ar := record.Audit{Operation: OperationPrefix + "issue", Tenant: o.Tenant, Names: names(o.Identifiers)}
	interrupted := false
	err := retryStorage(ctx, func() error {
		interrupted = false
		cur, unlock, err := s.lockOrder(ctx, o.ID)
		if err != nil {
			return err
		}
		defer unlock()
		if ierr != nil && (s.ctx.Err() != nil || errors.Is(ierr, errUpstreamUnknown)) {
			// Cut short by the relay's shutdown, or the upstream order's
			// fate unknown: the order stays processing and says so, and is
			// resumed (from its upstream order, when one was placed) when
			// a relay on the storage next reads it.
			cur.Interrupted = "the relay shut down during the upstream issuance"
			if s.ctx.Err() == nil {
				cur.Interrupted = "the upstream could not be asked what became of its order"
			}
			interrupted = true
			return s.save(ctx, keyOrders+o.ID, cur)
		}
		if ierr == nil {
			cur.Status, cur.Cert, cur.Error, cur.Interrupted = acme.StatusValid, rec.ID, nil, ""
			ar.Outcome, ar.Issuer, ar.Serial, ar.NotAfter = record.OutcomeOK, up.name(), cert.Leaf().SerialNumber.Text(16), rec.NotAfter
		} else {
			cur.Status, cur.Error = acme.StatusInvalid, downstreamProblem(ierr)
			if errors.Is(ierr, errCertNotStored) {
				cur.Error = internalError("the upstream CA issued the certificate but the relay could not store it (the relay's log has it); order again")
			}
			ar.Outcome, ar.Problem, ar.Detail = record.OutcomeFailure, cur.Error.Type, cur.Error.Detail
			if p := new(acme.Problem); len(persistRecords(ierr)) == 0 && !errors.As(ierr, &p) {
				ar.Detail = clip(ierr.Error(), 1024) // the audit trail is the operator's: the error itself
			}
		}
		return s.save(ctx, keyOrders+o.ID, cur)
	})
	if err != nil {
		s.logger().Error("relay: recording an issuance failed", "order", o.ID, "err", err)
		return
	}
	if interrupted {
		s.logger().Warn("relay: an upstream issuance was interrupted; it is resumed when the order is next read", "order", o.ID, "tenant", tenantLabel(o.Tenant), "names", ar.Names, "err", ierr)
		return
	}
	s.auditBackground(ar)
	if ar.Outcome == record.OutcomeOK {
		s.logger().Info("relay: certificate issued", "order", o.ID, "tenant", tenantLabel(o.Tenant), "names", ar.Names, "upstream", ar.Issuer, "serial", ar.Serial, "not_after", ar.NotAfter)
	} else {
		s.logger().Warn("relay: order failed", "order", o.ID, "tenant", tenantLabel(o.Tenant), "names", ar.Names, "problem", ar.Problem, "detail", ar.Detail)
	}
}

// errCertNotStored marks an issued certificate the storage did not take.
var errCertNotStored = errors.New("relay: storing the issued certificate failed")

// retryStorage calls f until it succeeds or ctx is done, waiting 50 ms
// after the first failure and twice as long after each next one (at most
// 2 s), and returns f's last error.
func retryStorage(ctx context.Context, f func() error) error {
	wait := 50 * time.Millisecond
	for {
		err := f()
		if err == nil || ctx.Err() != nil {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// storeCert stores an issued certificate and its ARI index, retrying
// each write. When the storage never takes them, the chain goes to the
// relay's log (a certificate is public), so that the operator still has
// what the upstream issued.
func (s *Server) storeCert(ctx context.Context, o *orderRecord, cert *acme.Certificate, up *Upstream) (*certRecord, error) {
	leaf := cert.Leaf()
	ari, err := acme.CertificateID(leaf)
	if err != nil {
		return nil, err
	}
	rec := &certRecord{
		ID: newID(), Account: o.Account, Tenant: o.Tenant, Order: o.ID, Upstream: up.name(),
		Identifiers: o.Identifiers, ARIID: ari, NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter,
		Issued: s.now().UTC(),
	}
	for _, ch := range cert.Chains {
		var b []byte
		for _, c := range ch.Certificates {
			b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
		}
		rec.Chains = append(rec.Chains, b)
	}
	err = retryStorage(ctx, func() error { return s.save(ctx, keyCerts+rec.ID, rec) })
	if err == nil {
		err = retryStorage(ctx, func() error { return s.Storage.Store(ctx, keyARI+ari, []byte(rec.ID)) })
	}
	if err == nil {
		err = retryStorage(ctx, func() error { return s.noteCurrent(ctx, rec) })
	}
	if err != nil {
		var chain []byte
		if len(rec.Chains) > 0 {
			chain = rec.Chains[0]
		}
		s.logger().Error("relay: storing an issued certificate failed; its chain is logged", "order", o.ID, "upstream", up.name(), "err", err, "chain", string(chain))
		return nil, fmt.Errorf("%w: %w", errCertNotStored, err)
	}
	return rec, nil
}

// upstreamError is a failed issuance at one upstream.
type upstreamError struct {
	name string
	err  error
}

func (e *upstreamError) Error() string { return "upstream " + e.name + ": " + e.err.Error() }
func (e *upstreamError) Unwrap() error { return e.err }

// maxPersistDetail bounds the detail of a problem that lists the
// dns-persist-01 records to publish.
const maxPersistDetail = 8 << 10

// downstreamProblem is the problem a downstream order shows for a failed
// upstream issuance: the records to publish when a read-only
// dns-persist-01 solver found them missing (unauthorized), else the
// upstream's own problem, when it sent one.
func downstreamProblem(err error) *acme.Problem {
	if recs := persistRecords(err); len(recs) > 0 {
		var b strings.Builder
		b.WriteString("upstream CA: ")
		var ue *upstreamError
		if errors.As(err, &ue) {
			b.WriteString("upstream " + ue.name + ": ")
		}
		fmt.Fprintf(&b, "publish the dns-persist-01 TXT record(s) that bind the names to the relay's account there, then order again:")
		for i, pe := range recs {
			line := fmt.Sprintf(" %s. IN TXT %s (%s);", pe.Name, pe.Record.ZoneFileValue(), clip(pe.Reason, 200))
			if b.Len()+len(line) > maxPersistDetail-64 {
				fmt.Fprintf(&b, " and %d more (in the relay's log)", len(recs)-i)
				break
			}
			b.WriteString(line)
		}
		return &acme.Problem{Type: problemNS + probUnauthorized, Status: http.StatusForbidden, Detail: strings.TrimSuffix(b.String(), ";")}
	}
	var p *acme.Problem
	if errors.As(err, &p) && p.Type != "" {
		out := *p
		out.Detail = clip("upstream CA: "+err.Error(), 1024)
		out.Subproblems = nil
		if out.Status == 0 {
			out.Status = http.StatusInternalServerError
		}
		return &out
	}
	// A Go error (the CA unreachable, a TLS failure, an answer that is no
	// ACME) says things about the relay's network the client has no use
	// for: the problem names the upstream only, and the relay's log and
	// audit trail keep the error.
	name := "the upstream CA"
	var ue *upstreamError
	if errors.As(err, &ue) {
		name = "upstream " + ue.name
	}
	p = problem(probServerInternal, http.StatusServiceUnavailable, "upstream CA: %s could not be reached or gave no usable answer (the relay's log has the error); try again later", clip(name, 256))
	p.RetryAfter = upstreamRetryAfter
	return p
}

// upstreamRetryAfter is the Retry-After of a problem for an upstream that
// could not be reached.
const upstreamRetryAfter = time.Minute

// persistRecords returns the distinct dns-persist-01 records that err
// (and every error it wraps) says are missing.
func persistRecords(err error) []*solvers.PersistRecordError {
	var out []*solvers.PersistRecordError
	seen := map[string]bool{}
	var walk func(error, int)
	walk = func(err error, depth int) {
		if err == nil || depth > 32 {
			return
		}
		if pe, ok := err.(*solvers.PersistRecordError); ok {
			if k := pe.Name + "\x00" + pe.Record.String(); !seen[k] {
				seen[k] = true
				out = append(out, pe)
			}
			return
		}
		switch u := err.(type) {
		case interface{ Unwrap() error }:
			walk(u.Unwrap(), depth+1)
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				walk(e, depth+1)
			}
		}
	}
	walk(err, 0)
	return out
}
