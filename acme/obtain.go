package acme

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// CleanupTimeout bounds each Solver.CleanUp and authorization deactivation
// that Obtain runs after the flow, under a context detached from the
// caller's.
const CleanupTimeout = 30 * time.Second

// defaultChallengeTypes is the order in which Obtain prefers challenge types
// when ObtainRequest.ChallengeTypes is empty: dns-persist-01 first (once its
// record exists it needs no change anywhere), then the types that need a
// listener, then the DNS types that write a record per validation, the
// account-scoped one before plain dns-01.
var defaultChallengeTypes = []string{ChallengeDNSPersist01, ChallengeHTTP01, ChallengeTLSALPN01, ChallengeDNSAccount01, ChallengeDNS01}

// ObtainRequest describes a certificate to obtain with [Client.Obtain].
type ObtainRequest struct {
	// Identifiers lists the names and addresses the certificate is for; the
	// certificate will hold exactly these. Required.
	Identifiers []Identifier
	// CertKey is the certificate's private key. It must not be the account
	// key. Required unless CSR is set.
	CertKey crypto.Signer
	// CSR, if set, is the DER certificate signing request to finalize with,
	// instead of one made for CertKey (which must then be nil): the key
	// stays with whoever made the CSR, as with an ACME relay. Its
	// signature must verify, its key must be one [Client] supports and not
	// the account key, and its names (subjectAltNames, and a common name,
	// which must be one of them) must be exactly Identifiers.
	CSR []byte
	// Solvers maps challenge types (ChallengeHTTP01, …) to the solver that
	// answers them. At least one is required.
	Solvers map[string]Solver
	// ChallengeTypes is the order of preference among the types in
	// Solvers; empty means dns-persist-01, http-01, tls-alpn-01,
	// dns-account-01, dns-01 (then any other type in Solvers is never
	// chosen: list it here).
	ChallengeTypes []string
	// Profile, Replaces, NotBefore and NotAfter are passed to NewOrder. An
	// order refused because of Replaces (alreadyReplaced, or a 403 saying
	// this account did not request the certificate) is placed once more
	// without it, unless KeepReplaces is set.
	Profile             string
	Replaces            string
	NotBefore, NotAfter time.Time
	// KeepReplaces makes Obtain return an order refused because of
	// Replaces as an error matching [ErrReplacesRefused] (and the CA's
	// problem) instead of ordering again without it: for a caller that
	// shares the certificate with others, such as the nodes of a fleet,
	// to whom alreadyReplaced means that someone else renewed it.
	KeepReplaces bool
	// PreferredChain selects among the chains the CA offers by the common
	// name of a root or issuer (see [PreferChain]); empty means the CA's
	// default chain.
	PreferredChain string
	// OnOrder, if set, is called with the order once the CA placed it,
	// before any authorization is worked on: a caller that must not pay
	// twice for one certificate keeps Order.URL, so that when the answer
	// to the finalization or the download is lost (a reset, a timeout, a
	// restart) it can ask the CA for that order ([Client.GetOrder]) and
	// fetch what was issued instead of ordering again.
	OnOrder func(*Order)
}

// A Certificate is the result of [Client.Obtain].
type Certificate struct {
	// Chain is the selected chain, leaf first.
	Chain *Chain
	// Chains are all chains the CA offered, its default first.
	Chains []*Chain
	// Order is the finalized order; Order.URL and Order.Certificate
	// identify it later.
	Order *Order
}

// Leaf returns the issued end-entity certificate.
func (c *Certificate) Leaf() *x509.Certificate { return c.Chain.Leaf() }

// ErrNoSolver is returned when an authorization offers no challenge type that
// a configured solver handles.
var ErrNoSolver = errors.New("acme: no solver for any offered challenge")

// ErrCertificateMismatch is returned when the issued certificate does not
// carry the requested key or exactly the requested identifiers, or has
// already expired (its NotAfter is past, or before its NotBefore).
var ErrCertificateMismatch = errors.New("acme: issued certificate does not match the request")

// Obtain runs the whole issuance flow: it places an order, solves each
// pending authorization with a configured [Solver], finalizes with a CSR for
// req.CertKey (or with req.CSR), downloads the chains, and checks that the
// leaf holds that CSR's public key and exactly the requested identifiers.
//
// Every presented challenge is cleaned up, even when ctx is cancelled
// (CleanUp then runs under a detached context bounded by CleanupTimeout).
// On failure the order's pending authorizations are deactivated. A failed
// validation is a [*ChallengeError] (errors.As) naming the challenge type,
// wrapping [ErrAuthorizationInvalid] and the CA's problem.
func (c *Client) Obtain(ctx context.Context, req ObtainRequest) (*Certificate, error) {
	if len(req.Identifiers) > 0 {
		ids, err := NormalizeIdentifiers(req.Identifiers)
		if err != nil {
			return nil, fmt.Errorf("acme: obtain: %w", err)
		}
		req.Identifiers = ids
	}
	csr, pub, err := c.checkObtain(req)
	if err != nil {
		return nil, err
	}
	oreq := OrderRequest{Identifiers: req.Identifiers, Profile: req.Profile, Replaces: req.Replaces, NotBefore: req.NotBefore, NotAfter: req.NotAfter}
	order, err := c.NewOrder(ctx, oreq)
	if err != nil && oreq.Replaces != "" && replacesRefused(err) && req.KeepReplaces {
		return nil, fmt.Errorf("%w: %w", ErrReplacesRefused, err)
	}
	if err != nil && oreq.Replaces != "" && replacesRefused(err) {
		c.logger().InfoContext(ctx, "acme: replaces refused; ordering without it", "replaces", oreq.Replaces, "err", err)
		oreq.Replaces = ""
		order, err = c.NewOrder(ctx, oreq)
	}
	if err != nil {
		return nil, err
	}
	if req.OnOrder != nil {
		req.OnOrder(order)
	}
	if err := c.authorize(ctx, order, req); err != nil {
		return nil, err
	}
	final, err := c.finalize(ctx, order, csr)
	if err != nil {
		return nil, err
	}
	chains, err := c.FetchCertificate(ctx, final.Certificate)
	if err != nil {
		return nil, err
	}
	chain := PreferChain(chains, req.PreferredChain)
	if err := checkIssued(chain.Leaf(), pub, req.Identifiers, time.Now()); err != nil {
		return nil, err
	}
	return &Certificate{Chain: chain, Chains: chains, Order: final}, nil
}

// finalize finalizes a ready order. A server that has not yet noticed the
// valid authorizations answers orderNotReady: the order is then polled
// until it is ready and finalized once more. order is never overwritten, so
// every error path still knows the order it is about.
func (c *Client) finalize(ctx context.Context, order *Order, csr []byte) (*Order, error) {
	final, err := c.FinalizeOrder(ctx, order, csr)
	if err == nil || !errors.Is(err, ErrOrderNotReady) {
		return final, err
	}
	cur, gerr := c.GetOrder(ctx, order.URL)
	if gerr != nil {
		return nil, fmt.Errorf("%w (after %w)", gerr, err)
	}
	ready, werr := c.WaitOrder(ctx, cur)
	if werr != nil {
		return nil, werr
	}
	if ready.Status == StatusValid && ready.Certificate != "" {
		return ready, nil // finalized meanwhile
	}
	return c.FinalizeOrder(ctx, ready, csr)
}

// ErrReplacesRefused matches the error of [Client.Obtain] with
// KeepReplaces set when the CA refused the order because of its
// "replaces" field (see replacesRefused).
var ErrReplacesRefused = errors.New("acme: the CA refused to order a replacement of the certificate")

// replacesRefused reports whether a newOrder failed because of its
// "replaces" field: the certificate already has a replacement (409
// alreadyReplaced), or this account did not request it (Boulder: 403
// unauthorized, "requester account did not request the certificate being
// replaced").
func replacesRefused(err error) bool {
	if errors.Is(err, ErrAlreadyReplaced) {
		return true
	}
	var p *Problem
	if !errors.As(err, &p) || p.Status != 403 {
		return false
	}
	return (p.Is(ErrUnauthorized) || p.Is(ErrMalformed)) && strings.Contains(strings.ToLower(p.Detail), "replace")
}

// checkObtain validates the request and returns the CSR and the public key
// the certificate must carry.
func (c *Client) checkObtain(req ObtainRequest) ([]byte, crypto.PublicKey, error) {
	if len(req.Identifiers) == 0 {
		return nil, nil, errors.New("acme: obtain: no identifiers")
	}
	if len(req.Solvers) == 0 {
		return nil, nil, errors.New("acme: obtain: no solvers")
	}
	if req.CSR != nil {
		if req.CertKey != nil {
			return nil, nil, errors.New("acme: obtain: CSR and CertKey are exclusive")
		}
		pub, err := c.checkCSR(req.CSR, req.Identifiers)
		if err != nil {
			return nil, nil, err
		}
		return req.CSR, pub, nil
	}
	if _, err := signingAlg(req.CertKey); err != nil {
		return nil, nil, fmt.Errorf("acme: obtain: certificate key: %w", err)
	}
	if c.isAccountKey(req.CertKey.Public()) {
		return nil, nil, errors.New("acme: obtain: the certificate key must not be the account key")
	}
	csr, err := CSR(req.CertKey, req.Identifiers)
	return csr, req.CertKey.Public(), err
}

// isAccountKey reports whether pub is the client's account key.
func (c *Client) isAccountKey(pub crypto.PublicKey) bool {
	ak := c.accountKey()
	if ak == nil {
		return false
	}
	eq, ok := ak.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && eq.Equal(pub)
}

// ErrBadCSRRequest is returned (wrapped, with the reason) by [Client.Obtain]
// for an ObtainRequest.CSR that cannot be used.
var ErrBadCSRRequest = errors.New("acme: obtain: unusable CSR")

// checkCSR checks a caller's CSR against the identifiers to order and
// returns its public key.
func (c *Client) checkCSR(der []byte, ids []Identifier) (crypto.PublicKey, error) {
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSRRequest, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrBadCSRRequest, err)
	}
	if _, err := signingAlg(publicOnly{csr.PublicKey}); err != nil {
		return nil, fmt.Errorf("%w: key: %w", ErrBadCSRRequest, err)
	}
	if c.isAccountKey(csr.PublicKey) {
		return nil, fmt.Errorf("%w: its key is the account key", ErrBadCSRRequest)
	}
	got := slices.Clone(csr.DNSNames)
	for i := range got {
		got[i] = "dns:" + strings.ToLower(got[i])
	}
	for _, ip := range csr.IPAddresses {
		a, _ := netip.AddrFromSlice(ip)
		got = append(got, "ip:"+a.Unmap().String())
	}
	if len(csr.EmailAddresses) > 0 || len(csr.URIs) > 0 {
		return nil, fmt.Errorf("%w: it has e-mail or URI names", ErrBadCSRRequest)
	}
	if cn := csr.Subject.CommonName; cn != "" && !slices.Contains(got, "dns:"+strings.ToLower(cn)) && !slices.Contains(got, "ip:"+cn) {
		return nil, fmt.Errorf("%w: common name %q is not one of its names", ErrBadCSRRequest, clipString(cn, 64))
	}
	if !slices.Equal(identifierKeys(got), identifierKeys(idStrings(ids))) {
		return nil, fmt.Errorf("%w: names %v, identifiers %v", ErrBadCSRRequest, clipStrings(got), ids)
	}
	return csr.PublicKey, nil
}

// publicOnly is a crypto.Signer that only knows its public key, so that
// signingAlg can judge a public key.
type publicOnly struct{ pub crypto.PublicKey }

func (p publicOnly) Public() crypto.PublicKey { return p.pub }
func (p publicOnly) Sign(io.Reader, []byte, crypto.SignerOpts) ([]byte, error) {
	return nil, errors.New("acme: public key only")
}

// idStrings returns "dns:name" / "ip:addr" for normalised identifiers.
func idStrings(ids []Identifier) []string {
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		out = append(out, id.Type+":"+id.Value)
	}
	return out
}

// identifierKeys returns a sorted, duplicate-free copy of s.
func identifierKeys(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

// clipStrings bounds what a list of names adds to an error.
func clipStrings(s []string) []string {
	if len(s) > 10 {
		s = append(slices.Clone(s[:10]), fmt.Sprintf("… %d more", len(s)-10))
	}
	for i := range s {
		s[i] = clipString(s[i], 256)
	}
	return s
}

// CSR returns a DER certificate signing request for key with exactly the
// given identifiers as subjectAltNames. The first DNS name, if short
// enough, is also the subject common name.
func CSR(key crypto.Signer, ids []Identifier) ([]byte, error) {
	ids, err := NormalizeIdentifiers(ids)
	if err != nil {
		return nil, fmt.Errorf("acme: CSR: %w", err)
	}
	tmpl := &x509.CertificateRequest{}
	for _, id := range ids {
		switch id.Type {
		case IdentifierDNS:
			tmpl.DNSNames = append(tmpl.DNSNames, id.Value)
		case IdentifierIP:
			ip := net.ParseIP(id.Value)
			if ip == nil {
				return nil, fmt.Errorf("acme: CSR: bad IP identifier %q", id.Value)
			}
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		default:
			return nil, fmt.Errorf("acme: CSR: unsupported identifier type %q", id.Type)
		}
	}
	if len(tmpl.DNSNames) > 0 && len(tmpl.DNSNames[0]) <= 64 {
		tmpl.Subject = pkix.Name{CommonName: tmpl.DNSNames[0]}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("acme: CSR: %w", err)
	}
	return der, nil
}

// checkIssued verifies the leaf against the request: it carries pub and
// exactly the identifiers ids, and has not expired at now. A NotBefore in
// the future is accepted: clocks differ, and an order may ask for it.
func checkIssued(leaf *x509.Certificate, pub crypto.PublicKey, ids []Identifier, now time.Time) error {
	if !leaf.NotAfter.After(now) || leaf.NotAfter.Before(leaf.NotBefore) {
		return fmt.Errorf("%w: valid from %s to %s, and it is now %s", ErrCertificateMismatch,
			leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	lp, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !lp.Equal(pub) {
		return fmt.Errorf("%w: public key differs from the CSR's", ErrCertificateMismatch)
	}
	var want, got []string
	for _, id := range ids {
		v := id.Value
		if id.Type == IdentifierDNS {
			v = "dns:" + strings.ToLower(v)
		} else if a, err := netip.ParseAddr(v); err == nil {
			v = "ip:" + a.Unmap().String()
		}
		want = append(want, v)
	}
	for _, n := range leaf.DNSNames {
		got = append(got, "dns:"+strings.ToLower(n))
	}
	for _, ip := range leaf.IPAddresses {
		a, _ := netip.AddrFromSlice(ip)
		got = append(got, "ip:"+a.Unmap().String())
	}
	want, got = identifierKeys(want), identifierKeys(got)
	if !slices.Equal(want, got) {
		return fmt.Errorf("%w: names %v, requested %v", ErrCertificateMismatch, got, want)
	}
	return nil
}

// presented is a challenge handed to a solver, to be cleaned up.
type presented struct {
	solver Solver
	chal   Challenge
	authz  string // the authorization's URL
}

// A ChallengeError reports that the CA could not validate a challenge: the
// authorization became invalid, or stayed pending with the challenge's
// error. Err wraps the CA's *Problem when it sent one. Callers use Type to
// try another challenge type next time.
type ChallengeError struct {
	Type       string     // the challenge type, such as ChallengeHTTP01
	Identifier Identifier // what was being validated
	Err        error
}

// Error names the challenge type, the identifier and the failure.
func (e *ChallengeError) Error() string {
	return fmt.Sprintf("acme: %s challenge for %s failed: %v", e.Type, e.Identifier.Value, e.Err)
}

// Unwrap returns the underlying error.
func (e *ChallengeError) Unwrap() error { return e.Err }

// authorize solves every pending authorization of the order.
func (c *Client) authorize(ctx context.Context, order *Order, req ObtainRequest) (err error) {
	var done []presented
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), CleanupTimeout)
		defer cancel()
		for _, p := range done {
			if cerr := p.solver.CleanUp(cctx, p.chal); cerr != nil {
				c.logger().WarnContext(cctx, "acme: challenge clean-up failed", "type", p.chal.Type, "identifier", p.chal.Identifier.Value, "err", cerr)
			}
		}
		if err != nil {
			c.deactivatePending(cctx, order)
		}
	}()

	types := req.ChallengeTypes
	if len(types) == 0 {
		types = defaultChallengeTypes
	}
	for _, u := range order.Authorizations {
		a, err := c.GetAuthorization(ctx, u)
		if err != nil {
			return err
		}
		if err := checkAuthorizationFor(a, req.Identifiers); err != nil {
			return err
		}
		switch a.Status {
		case StatusValid:
			continue
		case StatusPending:
		default:
			return authzError(a)
		}
		ch, solver, skipped := pickChallenge(a, types, req.Solvers)
		if solver == nil {
			offered := make([]string, 0, len(a.Challenges))
			for _, ch := range a.Challenges {
				offered = append(offered, clipString(ch.Type, 64))
			}
			if skipped != nil {
				return fmt.Errorf("%w: %s offers %v: %w", ErrNoSolver, a.Identifier.Value, offered, skipped)
			}
			return fmt.Errorf("%w: %s offers %v", ErrNoSolver, a.Identifier.Value, offered)
		}
		if err := solver.Present(ctx, ch); err != nil {
			return fmt.Errorf("acme: presenting %s challenge for %s: %w", ch.Type, a.Identifier.Value, err)
		}
		done = append(done, presented{solver, ch, a.URL})
	}
	if err := eachParallel(ctx, done, func(ctx context.Context, p presented) error {
		w, ok := p.solver.(Waiter)
		if !ok {
			return nil
		}
		if err := w.Wait(ctx, p.chal); err != nil {
			return fmt.Errorf("acme: %s challenge for %s not ready: %w", p.chal.Type, p.chal.Identifier.Value, err)
		}
		return nil
	}); err != nil {
		return err
	}
	var waits []presented
	for _, p := range done {
		got, err := c.AcceptChallenge(ctx, p.chal)
		if err != nil {
			return err
		}
		if got.Status == StatusValid {
			// Validated synchronously (step-ca): nothing to poll.
			continue
		}
		waits = append(waits, p)
	}
	return eachParallel(ctx, waits, func(ctx context.Context, p presented) error {
		_, err := c.WaitAuthorization(ctx, p.authz)
		if err != nil && errors.Is(err, ErrAuthorizationInvalid) {
			return &ChallengeError{Type: p.chal.Type, Identifier: p.chal.Identifier, Err: err}
		}
		return err
	})
}

// ErrAuthorizationMismatch is returned (wrapped) by [Client.Obtain] when
// one of the order's authorizations is for an identifier the order does
// not hold: no challenge of it is handed to a solver, which would
// otherwise publish a record or a token for a name nobody asked for.
var ErrAuthorizationMismatch = errors.New("acme: authorization is for an identifier not in the order")

// checkAuthorizationFor reports whether a is for one of ids (normalised;
// a wildcard authorization for the "*." name).
func checkAuthorizationFor(a *Authorization, ids []Identifier) error {
	id := a.Identifier
	if a.Wildcard {
		id.Value = "*." + id.Value
	}
	got, err := NormalizeIdentifiers([]Identifier{id})
	if err == nil && slices.Contains(ids, got[0]) {
		return nil
	}
	return fmt.Errorf("%w: %s is for %s", ErrAuthorizationMismatch, a.URL, clipString(id.String(), 256))
}

// pickChallenge returns the first challenge, in order of preference, that a
// solver handles and that is complete enough to answer: dns-persist-01
// with valid issuer domain names and an account URI, every other type with
// a token (and so a key authorization). When a challenge of a type with a
// solver was passed over, skipped says why.
func pickChallenge(a *Authorization, types []string, solvers map[string]Solver) (_ Challenge, _ Solver, skipped error) {
	for _, t := range types {
		s := solvers[t]
		if s == nil {
			continue
		}
		for _, ch := range a.Challenges {
			if ch.Type != t {
				continue
			}
			if err := answerable(ch); err != nil {
				skipped = errors.Join(skipped, err)
				continue
			}
			return ch, s, nil
		}
	}
	return Challenge{}, nil, skipped
}

// answerable reports why a challenge cannot be handed to a solver, if it
// cannot.
func answerable(ch Challenge) error {
	if ch.Type == ChallengeDNSPersist01 {
		return ch.CheckDNSPersist01()
	}
	if ch.Token == "" || ch.KeyAuthorization == "" {
		return fmt.Errorf("%w: %s challenge without a token", ErrMalformedChallenge, clipString(ch.Type, 64))
	}
	return nil
}

// deactivatePending deactivates the order's authorizations that are still
// pending, so that they are not left behind for reuse (RFC 8555, 7.5.2) —
// but not one whose challenge the CA is validating (processing): that
// validation ends by itself, and Pebble 2.10.3 was seen to hang a
// deactivation that raced with its validation.
func (c *Client) deactivatePending(ctx context.Context, order *Order) {
	for _, u := range order.Authorizations {
		a, err := c.GetAuthorization(ctx, u)
		if err != nil || a.Status != StatusPending || slices.ContainsFunc(a.Challenges, func(ch Challenge) bool { return ch.Status == StatusProcessing }) {
			continue
		}
		if _, err := c.DeactivateAuthorization(ctx, a); err != nil {
			c.logger().DebugContext(ctx, "acme: deactivating authorization failed", "url", u, "err", err)
		}
	}
}

// eachParallel runs f for every item concurrently and returns the first
// error; the others are cancelled.
func eachParallel[T any](ctx context.Context, items []T, f func(context.Context, T) error) error {
	switch len(items) {
	case 0:
		return nil
	case 1:
		return f(ctx, items[0])
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for _, it := range items {
		wg.Go(func() {
			if err := f(ctx, it); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		})
	}
	wg.Wait()
	return first
}
