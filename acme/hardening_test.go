package acme_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
)

// rewriteCA returns a CA whose responses on paths with prefix are passed
// through edit (the decoded JSON object) before they reach the client.
// Faults, answering the request themselves when they return true, run
// first.
func rewriteCA(t *testing.T, prefix string, edit func(r *http.Request, obj map[string]any), faults ...func(w http.ResponseWriter, r *http.Request) bool) *testpebble.CA {
	t.Helper()
	return newCA(t, testpebble.Options{Wrap: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for _, f := range faults {
				if f(w, r) {
					return
				}
			}
			if !strings.HasPrefix(r.URL.Path, prefix) {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			var obj map[string]any
			if rec.Code < 300 && json.Unmarshal(body, &obj) == nil {
				edit(r, obj)
				body, _ = json.Marshal(obj)
			}
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Del("Content-Length")
			w.WriteHeader(rec.Code)
			w.Write(body)
		})
	}})
}

// A finalize answered with orderNotReady must neither crash (the order used
// to be overwritten with nil in exactly that branch) nor lose the order.
func TestFinalizeOrderNotReady(t *testing.T) {
	t.Parallel()
	notReady := func(w http.ResponseWriter) {
		w.Header().Set("Replay-Nonce", "bm9uY2U")
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"type":"urn:ietf:params:acme:error:orderNotReady","detail":"order is not ready","status":403}`)
	}
	t.Run("once, then ready", func(t *testing.T) {
		t.Parallel()
		var refused atomic.Bool
		ca := faultCA(t, func(w http.ResponseWriter, r *http.Request) bool {
			if strings.HasPrefix(r.URL.Path, "/finalize-order/") && refused.CompareAndSwap(false, true) {
				notReady(w)
				return true
			}
			return false
		})
		s := newHTTPSolver(t, ca)
		c := registered(t, ca)
		cert := mustObtain(t, c, s, "notready.example.com")
		if cert.Order == nil || cert.Order.URL == "" || cert.Order.Status != acme.StatusValid {
			t.Fatalf("order = %+v, want the valid order with its URL", cert.Order)
		}
		if got := ca.Requests("finalize"); got != 2 {
			t.Errorf("%d finalize requests, want 2 (refused, then accepted)", got)
		}
	})
	t.Run("always", func(t *testing.T) {
		t.Parallel()
		ca := faultCA(t, func(w http.ResponseWriter, r *http.Request) bool {
			if strings.HasPrefix(r.URL.Path, "/finalize-order/") {
				notReady(w)
				return true
			}
			return false
		})
		s := newHTTPSolver(t, ca)
		c := registered(t, ca)
		_, _, err := obtain(t, c, s, acme.DNSNames("neverready.example.com"), nil)
		wantIs(t, err, acme.ErrOrderNotReady)
		if got := ca.Requests("finalize"); got != 2 {
			t.Errorf("%d finalize requests, want 2", got)
		}
	})
}

// step-ca leaves a challenge whose validation failed pending, with the
// error attached. The wait must end within the grace, with the CA's
// problem, and the refused deactivation must not hide it; the polls in
// the grace back off as any others do.
func TestPendingChallengeWithError(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, chalStatus   string
		minPolls, maxPolls int32
	}{
		// step-ca: the challenge is pending again, with the error: not
		// retried, so the first poll that shows it ends the wait (one
		// more answer shows it: the clean-up's look before deactivating).
		{"pending", acme.StatusPending, 1, 2},
		// A CA that retries keeps it processing: polled through the
		// grace (waits growing by half from the default 100 ms fit six
		// polls in 2 s; polls at a constant 100 ms made over twenty; a
		// loaded machine makes fewer, never more).
		{"processing", acme.StatusProcessing, 3, 10},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			testChallengeWithError(t, tt.chalStatus, tt.minPolls, tt.maxPolls)
		})
	}
}

func testChallengeWithError(t *testing.T, chalStatus string, minPolls, maxPolls int32) {
	var erred atomic.Int32 // answers that showed the pending challenge's error
	asStepCA := func(_ *http.Request, obj map[string]any) {
		if obj["status"] == acme.StatusInvalid {
			obj["status"] = acme.StatusPending
		}
		chals, _ := obj["challenges"].([]any)
		for _, ch := range chals {
			if m, ok := ch.(map[string]any); ok && m["status"] == acme.StatusInvalid {
				m["status"] = chalStatus
				erred.Add(1)
			}
		}
	}
	ca := rewriteCA(t, "/authZ/", asStepCA, refuseDeactivation)
	s := newHTTPSolver(t, ca)
	c := registered(t, ca)
	var logs bytes.Buffer
	c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// No token is presented: the solver answers 404 and validation fails.
	failing := map[string]acme.Solver{acme.ChallengeHTTP01: noopSolver{}}
	start := time.Now()
	_, _, err := obtain(t, c, s, acme.DNSNames("stepca.example.com"), func(r *acme.ObtainRequest) { r.Solvers = failing })
	took := time.Since(start)
	wantIs(t, err, acme.ErrAuthorizationInvalid)
	var p *acme.Problem
	if !errors.As(err, &p) {
		t.Fatalf("got error %v, want one carrying the CA's *acme.Problem", err)
	}
	if errors.Is(err, acme.ErrMalformed) || errors.Is(err, acme.ErrServerInternal) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got error %v, want the challenge's problem, not the deactivation's or a timeout", err)
	}
	if p.Type == "" || p.Detail == "" {
		t.Fatalf("problem = %+v, want the CA's type and detail", p)
	}
	// The point of the test: seconds (the grace), not the 60 s context.
	if took > 30*time.Second {
		t.Fatalf("Obtain took %v, want it to end shortly after the %v grace", took, acme.ChallengeErrorGrace)
	}
	if n := ca.Requests("authz"); n > 40 {
		t.Errorf("%d authorization requests, want a bounded few", n)
	}
	if n := erred.Load(); n < minPolls || n > maxPolls {
		t.Errorf("the %s challenge's error was polled %d times, want %d to %d", chalStatus, n, minPolls, maxPolls)
	}
	// The clean-up deactivates a pending authorization (step-ca refuses
	// it; the refusal is logged) but not one still being validated.
	tried := ca.Requests("authz") > 0 && strings.Contains(logs.String(), "deactivating authorization failed")
	if want := chalStatus == acme.StatusPending; tried != want {
		t.Errorf("deactivation attempted and refused: %v, want %v; log:\n%s", tried, want, logs.String())
	}
}

// refuseDeactivation answers an authorization deactivation as step-ca
// does: 400 malformed.
func refuseDeactivation(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, "/authZ/") {
		return false
	}
	payload := jwsPayload(r)
	if !bytes.Contains(payload, []byte(acme.StatusDeactivated)) {
		return false
	}
	w.Header().Set("Replay-Nonce", "bm9uY2U")
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(http.StatusBadRequest)
	io.WriteString(w, `{"type":"urn:ietf:params:acme:error:malformed","detail":"cannot deactivate","status":400}`)
	return true
}

// noopSolver presents nothing, so that validation fails.
type noopSolver struct{}

func (noopSolver) Present(context.Context, acme.Challenge) error { return nil }
func (noopSolver) CleanUp(context.Context, acme.Challenge) error { return nil }

// Redirects are refused, for the default client and a caller's alike, and
// the signed body never reaches the redirect's target.
func TestRedirectRefused(t *testing.T) {
	t.Parallel()
	var reached atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached.Add(1)
	}))
	t.Cleanup(target.Close)
	for _, code := range []int{http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		for _, own := range []bool{false, true} {
			t.Run(fmt.Sprintf("%d/own-client=%v", code, own), func(t *testing.T) {
				t.Parallel()
				ca := faultCA(t, func(w http.ResponseWriter, r *http.Request) bool {
					if r.URL.Path != "/order-plz" {
						return false
					}
					w.Header().Set("Replay-Nonce", "bm9uY2U")
					http.Redirect(w, r, target.URL+"/steal", code)
					return true
				})
				c := &acme.Client{DirectoryURL: ca.DirectoryURL(), Key: newKey(t)}
				if own {
					c.HTTPClient = ca.HTTPClient() // follows redirects by itself
				} else {
					c.RootCAs = ca.TLSRoots()
				}
				if _, err := c.Register(ctxT(t), acme.Account{TermsOfServiceAgreed: true}); err != nil {
					t.Fatalf("Register: %v", err)
				}
				_, err := c.NewOrder(ctxT(t), acme.OrderRequest{Identifiers: acme.DNSNames("redirect.example.com")})
				wantIs(t, err, acme.ErrRedirect)
				if !strings.Contains(err.Error(), target.URL+"/steal") {
					t.Errorf("error %q does not name the target", err)
				}
				if n := reached.Load(); n != 0 {
					t.Fatalf("the redirect target got %d requests, want none", n)
				}
			})
		}
	}
}

// Registration without agreeing to the CA's terms fails with their URL and
// sends no newAccount request.
func TestTermsNotAgreed(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	c := newClient(t, ca)
	dir, err := c.Directory(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Register(ctxT(t), acme.Account{Contact: []string{"mailto:ops@example.com"}})
	wantIs(t, err, acme.ErrTermsNotAgreed)
	if dir.Meta.TermsOfService == "" || !strings.Contains(err.Error(), dir.Meta.TermsOfService) {
		t.Errorf("error %q does not name the terms %q", err, dir.Meta.TermsOfService)
	}
	if n := ca.Requests("newAccount"); n != 0 {
		t.Fatalf("%d newAccount requests, want 0", n)
	}
}

// The EAB MAC key appears in no printed form.
func TestEABRedacted(t *testing.T) {
	t.Parallel()
	key := []byte("very-secret-mac-key-0123456789ab")
	eab := &acme.ExternalAccountBinding{KeyID: "kid-1", HMACKey: key}
	var js, txt bytes.Buffer
	for _, h := range []slog.Handler{slog.NewJSONHandler(&js, nil), slog.NewTextHandler(&txt, nil)} {
		l := slog.New(h)
		l.Info("eab", "ptr", eab, "val", *eab, "any", any(eab))
		l.Info("eab", slog.Any("ptr", eab))
	}
	j, err := json.Marshal(eab)
	if err != nil {
		t.Fatal(err)
	}
	jv, _ := json.Marshal(struct{ E acme.ExternalAccountBinding }{*eab})
	forms := map[string]string{
		"json log": js.String(), "text log": txt.String(),
		"%v": fmt.Sprintf("%v", eab), "%+v": fmt.Sprintf("%+v", eab), "%#v": fmt.Sprintf("%#v", eab),
		"%+v value": fmt.Sprintf("%+v", *eab), "%#v value": fmt.Sprintf("%#v", *eab), "%s": fmt.Sprintf("%s", eab),
		"%x": fmt.Sprintf("%x", eab), "%x value": fmt.Sprintf("%x", *eab), "%q": fmt.Sprintf("%q", *eab),
		"json": string(j), "json in struct": string(jv),
		"in a struct %+v": fmt.Sprintf("%+v", struct{ E *acme.ExternalAccountBinding }{eab}),
	}
	for name, s := range forms {
		if strings.Contains(s, string(key)) || strings.Contains(s, hex.EncodeToString(key)) || strings.Contains(s, fmt.Sprint(key)) {
			t.Errorf("%s leaks the MAC key: %s", name, s)
		}
		if !strings.Contains(s, "kid-1") {
			t.Errorf("%s lost the key ID: %s", name, s)
		}
	}
}

// A CA's problem text is capped and stripped of control characters before
// it reaches an error string.
func TestProblemTextSanitized(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("A", 100_000)
	evil := "line one\n2026-12-01 level=INFO msg=forged\x1b[31mred\x1b[0m\u202eevil\x00" + long
	jstr := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	var subs []string
	for i := range 1000 {
		subs = append(subs, fmt.Sprintf(`{"type":"urn:ietf:params:acme:error:caa","detail":%s,"identifier":{"type":"dns","value":"n%d.example.com"}}`, jstr(evil[:600]), i))
	}
	doc := fmt.Sprintf(`{"type":"urn:ietf:params:acme:error:compound","detail":%s,"status":403,"subproblems":[%s]}`, jstr(evil), strings.Join(subs, ","))
	ca := faultCA(t, func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/order-plz" {
			return false
		}
		w.Header().Set("Replay-Nonce", "bm9uY2U")
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, doc)
		return true
	})
	c := registered(t, ca)
	_, err := c.NewOrder(ctxT(t), acme.OrderRequest{Identifiers: acme.DNSNames("text.example.com")})
	wantIs(t, err, acme.ErrCAA)
	msg := err.Error()
	if len(msg) > 32<<10 {
		t.Errorf("error is %d bytes, want it capped", len(msg))
	}
	if strings.ContainsAny(msg, "\n\r\x1b\x00\u202e") {
		t.Errorf("error carries control characters: %q", msg[:200])
	}
	var p *acme.Problem
	if !errors.As(err, &p) || len(p.Detail) > acme.MaxProblemDetail || len(p.Subproblems) > 16 {
		t.Fatalf("problem: detail %d bytes, %d subproblems; want at most %d and 16", len(p.Detail), len(p.Subproblems), acme.MaxProblemDetail)
	}
	if !strings.HasPrefix(p.Detail, "line one 2026-12-01 level=INFO msg=forged[31mred[0mevil") {
		t.Errorf("detail = %q, want the text without its control characters", p.Detail[:60])
	}
}

// A profile asked of a CA whose directory lists none is an error, and no
// order is placed.
func TestProfileWithoutProfiles(t *testing.T) {
	t.Parallel()
	ca := rewriteCA(t, "/dir", func(_ *http.Request, obj map[string]any) {
		if meta, ok := obj["meta"].(map[string]any); ok {
			delete(meta, "profiles")
		}
	})
	c := registered(t, ca)
	_, err := c.NewOrder(ctxT(t), acme.OrderRequest{Identifiers: acme.DNSNames("p.example.com"), Profile: "shortlived"})
	wantIs(t, err, acme.ErrInvalidProfile)
	if !strings.Contains(err.Error(), "offers no profiles") {
		t.Errorf("error %q does not say the CA offers no profiles", err)
	}
	if n := ca.Requests("newOrder"); n != 0 {
		t.Fatalf("%d newOrder requests, want 0", n)
	}
}

// The client learns the CA's validation time and polls first at about it.
func TestPollLearnsValidationTime(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	s := newHTTPSolver(t, ca)
	c := registered(t, ca)
	if v, f := c.PollTimings(); v != 0 || f != 0 {
		t.Fatalf("PollTimings = %v, %v before any poll, want zero", v, f)
	}
	const delay = 400 * time.Millisecond
	s.delay.Store(int64(delay))
	mustObtain(t, c, s, "learn1.example.com")
	v, f := c.PollTimings()
	if v < delay || v > delay+5*time.Second {
		t.Fatalf("learned validation time %v, want at least the CA's %v", v, delay)
	}
	if f <= 0 {
		t.Fatalf("learned finalization time %v, want some", f)
	}
	// With the time learned, the next authorization is polled once, or
	// twice when the first poll probed a little early (a third poll is
	// allowed for a validation slowed down by a busy machine).
	ca.ResetCounts()
	mustObtain(t, c, s, "learn2.example.com")
	if n := ca.Requests("authz"); n > 4 {
		t.Errorf("%d authorization requests for one name, want at most 4 (fetch + 1-3 polls)", n)
	}
}

// A failed validation names its challenge type, for a fallback next time.
func TestChallengeErrorNamesType(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	c := registered(t, ca)
	s := newHTTPSolver(t, ca)
	_, _, err := obtain(t, c, s, acme.DNSNames("cherr.example.com"), func(r *acme.ObtainRequest) {
		r.Solvers = map[string]acme.Solver{acme.ChallengeHTTP01: noopSolver{}}
	})
	var ce *acme.ChallengeError
	if !errors.As(err, &ce) || ce.Type != acme.ChallengeHTTP01 || ce.Identifier.Value != "cherr.example.com" {
		t.Fatalf("got %v, want a *acme.ChallengeError for http-01 and the name", err)
	}
	wantIs(t, err, acme.ErrAuthorizationInvalid)
	wantIs(t, err, acme.ErrUnauthorized)
}

// exchanges records what an Observer is told.
type exchanges struct {
	mu  sync.Mutex
	all []acme.Exchange
}

func (x *exchanges) ObserveExchange(e acme.Exchange) {
	x.mu.Lock()
	x.all = append(x.all, e)
	x.mu.Unlock()
}

func (x *exchanges) ops() map[string]int {
	x.mu.Lock()
	defer x.mu.Unlock()
	m := map[string]int{}
	for _, e := range x.all {
		m[e.Operation]++
	}
	return m
}

// The Observer sees every exchange of an issuance, with its operation,
// status and identifiers, one report per call, and the CA's problem on
// failure; never a nonce or a key.
func TestObserver(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{})
	s := newHTTPSolver(t, ca)
	obs := &exchanges{}
	c := newClient(t, ca)
	c.Observer = obs
	if _, err := c.Register(ctxT(t), acme.Account{TermsOfServiceAgreed: true}); err != nil {
		t.Fatal(err)
	}
	mustObtain(t, c, s, "observed.example.com")
	got := obs.ops()
	for op, want := range map[string]int{acme.OpDirectory: 1, acme.OpNewNonce: 1, acme.OpNewAccount: 1, acme.OpNewOrder: 1, acme.OpChallenge: 1, acme.OpFinalize: 1, acme.OpCertificate: 1} {
		if got[op] != want {
			t.Errorf("%s reported %d times, want %d (all: %v)", op, got[op], want, got)
		}
	}
	// The polls depend on how fast Pebble validates and finalizes (it may
	// answer the challenge or the finalize already valid): the fetch of
	// the authorization, then its polls; the order's polls. Each request
	// the CA received for them is reported once.
	if got[acme.OpAuthz] < 1 || got[acme.OpAuthz] != ca.Requests("authz") {
		t.Errorf("authz reported %d times, the CA received %d requests (all: %v)", got[acme.OpAuthz], ca.Requests("authz"), got)
	}
	if got[acme.OpOrder] != ca.Requests("order") {
		t.Errorf("order reported %d times, the CA received %d requests (all: %v)", got[acme.OpOrder], ca.Requests("order"), got)
	}
	obs.mu.Lock()
	for _, e := range obs.all {
		if e.Status == 0 || e.Status >= 400 || e.Latency <= 0 || e.Time.IsZero() || e.Directory != ca.DirectoryURL() {
			t.Errorf("exchange %+v: want a status, a latency, a time and the directory", e)
		}
		if e.Operation == acme.OpNewOrder && (len(e.Identifiers) != 1 || e.Identifiers[0].Value != "observed.example.com") {
			t.Errorf("newOrder exchange identifiers %v", e.Identifiers)
		}
		if (e.Operation == acme.OpNewOrder || e.Operation == acme.OpFinalize) && e.Account == "" {
			t.Errorf("%s exchange without the account URL", e.Operation)
		}
	}
	obs.mu.Unlock()
	// A refusal carries the CA's problem.
	_, err := c.NewOrder(ctxT(t), acme.OrderRequest{Identifiers: acme.DNSNames("x.example.com"), Profile: "nope"})
	wantIs(t, err, acme.ErrInvalidProfile)
	ca2 := faultCA(t, func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/order-plz" {
			return false
		}
		w.Header().Set("Content-Type", "application/problem+json")
		w.Header().Set("Retry-After", "60")
		w.WriteHeader(http.StatusTooManyRequests)
		io.WriteString(w, `{"type":"urn:ietf:params:acme:error:rateLimited","detail":"too many new orders","status":429}`)
		return true
	})
	obs2 := &exchanges{}
	c2 := registered(t, ca2)
	c2.Observer = obs2
	_, err = c2.NewOrder(ctxT(t), acme.OrderRequest{Identifiers: acme.DNSNames("rl.example.com")})
	wantIs(t, err, acme.ErrRateLimited)
	obs2.mu.Lock()
	defer obs2.mu.Unlock()
	last := obs2.all[len(obs2.all)-1]
	if last.Operation != acme.OpNewOrder || last.Status != 429 || !strings.HasSuffix(last.ProblemType, "rateLimited") || last.ProblemDetail != "too many new orders" || last.RetryAfter != time.Minute {
		t.Fatalf("rate-limited exchange = %+v", last)
	}
}
