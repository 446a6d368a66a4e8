package acme_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/testpebble"
)

// answer is a CA's response as a hostile CA's edit sees it.
type answer struct {
	code   int
	header http.Header
	body   []byte
}

// mutateCA returns a CA (which with synthChallenge never sees a challenge
// POST, see below) that passes the responses to requests for which
// match returns true through edit (which may change anything), while
// edit is armed (see the returned func, which arms an edit or disarms
// with nil).
func mutateCA(t *testing.T, synthChallenge bool, match func(r *http.Request) bool) (*testpebble.CA, func(edit func(r *http.Request, a *answer))) {
	t.Helper()
	var cur atomic.Pointer[func(r *http.Request, a *answer)]
	ca := newCA(t, testpebble.Options{Wrap: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			edit := cur.Load()
			if edit == nil || !match(r) {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			if synthChallenge && strings.HasPrefix(r.URL.Path, "/chalZ/") {
				// Pebble is not told of the challenge: a validation that
				// ran while the client deactivates the authorization
				// deadlocks Pebble 2.10.3 (its VA and WFE take the
				// authorization's and challenge's locks in different
				// orders). The answer Pebble would give, with a nonce
				// from Pebble, is edited instead.
				nr := httptest.NewRequestWithContext(r.Context(), http.MethodHead, "/nonce-plz", nil)
				nr.Host = r.Host
				nr.Header.Set("User-Agent", r.Header.Get("User-Agent"))
				next.ServeHTTP(rec, nr)
				rec.Body.Reset()
				rec.Header().Set("Content-Type", "application/json")
				fmt.Fprintf(rec.Body, `{"type":"http-01","url":"https://%s%s","status":"pending","token":"dG9rZW4"}`, r.Host, r.URL.Path)
			} else {
				next.ServeHTTP(rec, r)
			}
			a := &answer{code: rec.Code, header: rec.Header().Clone(), body: rec.Body.Bytes()}
			a.header.Del("Content-Length")
			(*edit)(r, a)
			for k, v := range a.header {
				w.Header()[k] = v
			}
			w.WriteHeader(a.code)
			w.Write(a.body)
		})
	}})
	arm := func(edit func(r *http.Request, a *answer)) {
		if edit == nil {
			cur.Store(nil)
			return
		}
		cur.Store(&edit)
	}
	return ca, arm
}

// hostileFault is one lie a CA can tell in its answer to one request.
type hostileFault struct {
	name string
	edit func(r *http.Request, a *answer)
	// ok lists the exchanges for which the fault may go unnoticed: their
	// answer's body is not read (revocation, key change), or the fault
	// is harmless (an unknown member nested deep).
	ok []string
}

// skipFaults lists, by fault, the exchanges it is not tried on: a
// challenge answer without a status is a challenge still being processed,
// and the client rightly waits for its authorization, which the test's CA
// (not told of the challenge) never completes.
var skipFaults = map[string][]string{"null members": {"challenge"}, "deeply nested member": {"challenge"}}

func body(s string) func(*http.Request, *answer) {
	return func(_ *http.Request, a *answer) { a.body = []byte(s) }
}

func status(code int, ctype, b string) func(*http.Request, *answer) {
	return func(_ *http.Request, a *answer) {
		a.code = code
		a.header.Del("Location")
		a.header.Del("Link")
		if ctype != "" {
			a.header.Set("Content-Type", ctype)
		}
		a.body = []byte(b)
	}
}

var (
	bodyIgnored = []string{"revokeCert", "keyChange"}
	// An account object has no required member: one with none is
	// accepted as it is.
	accountToo = append([]string{"newAccount", "account"}, bodyIgnored...)
)

var hostileFaults = []hostileFault{
	{"not JSON", body("hello, world"), bodyIgnored},
	{"truncated JSON", func(_ *http.Request, a *answer) {
		a.body = a.body[:len(a.body)/2]
		if len(a.body) == 0 {
			a.body = []byte(`{"status":"val`)
		}
	}, bodyIgnored},
	{"array for object", body(`[{"status":"valid"}]`), bodyIgnored},
	{"numbers for strings", body(`{"status":7,"identifiers":"x","identifier":9,"challenges":{},"authorizations":5,"certificate":1,"finalize":[],"contact":5,"suggestedWindow":"soon","newNonce":3}`), bodyIgnored},
	{"null", body(`null`), bodyIgnored},
	{"null members", body(`{"status":null,"identifier":null,"identifiers":null,"challenges":null,"finalize":null,"suggestedWindow":null,"newNonce":null}`), accountToo},
	{"empty 200", status(http.StatusOK, "", ""), bodyIgnored},
	{"HTML 200", status(http.StatusOK, "text/html", "<html><body><h1>Welcome to nginx!</h1></body></html>"), bodyIgnored},
	{"2 MiB body", func(_ *http.Request, a *answer) {
		a.body = []byte(`{"status":"valid","x":"` + strings.Repeat("a", 2<<20) + `"}`)
	}, nil},
	{"deeply nested member", body(strings.Repeat(`{"a":`, 4000) + `1` + strings.Repeat(`}`, 4000)), accountToo},
	{"too deeply nested", body(strings.Repeat(`[`, 20000) + strings.Repeat(`]`, 20000)), bodyIgnored},
	{"204", status(http.StatusNoContent, "", ""), bodyIgnored},
	{"302 to another host", func(_ *http.Request, a *answer) {
		a.code = http.StatusFound
		a.header.Set("Location", "https://elsewhere.example/steal")
		a.body = nil
	}, nil},
	{"400 without a problem", status(http.StatusBadRequest, "", ""), nil},
	{"500 with a caa problem", status(http.StatusInternalServerError, "application/problem+json", `{"type":"urn:ietf:params:acme:error:caa","detail":"odd","status":500}`), nil},
	{"429 without Retry-After", status(http.StatusTooManyRequests, "", ""), nil},
	{"problem document not JSON", status(http.StatusForbidden, "application/problem+json", `{"type":`), nil},
	{"4 MiB problem document", status(http.StatusForbidden, "application/problem+json", `{"type":"urn:ietf:params:acme:error:unauthorized","detail":"`+strings.Repeat("x", 4<<20)+`"}`), nil},
}

// hostileExchange drives one kind of exchange against a CA that lies in
// its answers to requests matching path (and method, if set).
type hostileExchange struct {
	name   string
	method string
	path   string
	// setup runs before the fault is armed; run makes the exchange.
	setup func(t *testing.T, ca *testpebble.CA, c *acme.Client, s *httpSolver) any
	run   func(ctx context.Context, c *acme.Client, s *httpSolver, state any) error
}

func obtainRun(names string) func(ctx context.Context, c *acme.Client, s *httpSolver, _ any) error {
	var n atomic.Int32
	return func(ctx context.Context, c *acme.Client, s *httpSolver, _ any) error {
		_, err := c.Obtain(ctx, acme.ObtainRequest{Identifiers: acme.DNSNames(fmt.Sprintf("h%d.%s", n.Add(1), names)), CertKey: genKey(), Solvers: s.solvers()})
		return err
	}
}

var hostileExchanges = []hostileExchange{
	{name: "directory", path: "/dir", run: func(ctx context.Context, c *acme.Client, _ *httpSolver, _ any) error {
		_, err := c.Directory(ctx)
		return err
	}},
	{name: "newAccount", path: "/sign-me-up", run: func(ctx context.Context, c *acme.Client, _ *httpSolver, _ any) error {
		_, err := c.Register(ctx, acme.Account{TermsOfServiceAgreed: true})
		return err
	}},
	{name: "account", path: "/my-account/", setup: register, run: func(ctx context.Context, c *acme.Client, _ *httpSolver, _ any) error {
		_, err := c.GetAccount(ctx)
		return err
	}},
	{name: "keyChange", path: "/rollover-account-key", setup: register, run: func(ctx context.Context, c *acme.Client, _ *httpSolver, _ any) error {
		return c.RolloverKey(ctx, genKey())
	}},
	{name: "newOrder", path: "/order-plz", setup: register, run: func(ctx context.Context, c *acme.Client, _ *httpSolver, _ any) error {
		_, err := c.NewOrder(ctx, acme.OrderRequest{Identifiers: acme.DNSNames("order.hostile.example")})
		return err
	}},
	{name: "authorization", path: "/authZ/", setup: register, run: obtainRun("authz.hostile.example")},
	{name: "challenge", path: "/chalZ/", setup: register, run: obtainRun("chal.hostile.example")},
	{name: "finalize", path: "/finalize-order/", setup: register, run: obtainRun("final.hostile.example")},
	{name: "certificate", path: "/certZ/", setup: register, run: obtainRun("cert.hostile.example")},
	{name: "renewalInfo", path: "/draft-ietf-acme-ari-03/renewalInfo/", setup: issued, run: func(ctx context.Context, c *acme.Client, _ *httpSolver, state any) error {
		_, err := c.RenewalInfo(ctx, state.(*x509.Certificate))
		return err
	}},
	{name: "revokeCert", path: "/revoke-cert", setup: issued, run: func(ctx context.Context, c *acme.Client, _ *httpSolver, state any) error {
		return c.RevokeCertificate(ctx, state.(*x509.Certificate).Raw, nil, acme.ReasonUnspecified)
	}},
}

func register(t *testing.T, _ *testpebble.CA, c *acme.Client, _ *httpSolver) any {
	t.Helper()
	if _, err := c.Register(ctxT(t), acme.Account{TermsOfServiceAgreed: true}); err != nil {
		t.Fatalf("Register: %v", err)
	}
	return nil
}

func issued(t *testing.T, ca *testpebble.CA, c *acme.Client, s *httpSolver) any {
	t.Helper()
	register(t, ca, c, s)
	return mustObtain(t, c, s, "issued.hostile.example").Leaf()
}

// TestHostileCA makes every kind of exchange against a CA that answers it
// with each fault: the call must fail (unless the answer's body is not
// read), soon, with an error that errors.Is/As can tell apart — never
// hang until its context ends.
func TestHostileCA(t *testing.T) {
	t.Parallel()
	for _, x := range hostileExchanges {
		t.Run(x.name, func(t *testing.T) {
			t.Parallel()
			ca, arm := mutateCA(t, true, func(r *http.Request) bool {
				return strings.HasPrefix(r.URL.Path, x.path) && (x.method == "" || r.Method == x.method)
			})
			s := newHTTPSolver(t, ca)
			for _, f := range hostileFaults {
				t.Run(f.name, func(t *testing.T) {
					if slices.Contains(skipFaults[f.name], x.name) {
						t.Skip("not a fault for this exchange")
					}
					arm(nil)
					c := newClient(t, ca)
					var state any
					if x.setup != nil {
						state = x.setup(t, ca, c, s)
					}
					arm(f.edit)
					defer arm(nil)
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					defer cancel()
					err := x.run(ctx, c, s, state)
					if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
						t.Fatalf("the exchange ran into its deadline: %v", err)
					}
					if err == nil {
						if slices.Contains(f.ok, x.name) {
							return
						}
						t.Fatal("succeeded against a hostile CA")
					}
					var p *acme.Problem
					clear := errors.As(err, &p)
					for _, target := range []error{acme.ErrMalformedResponse, acme.ErrMalformedChain, acme.ErrResponseTooLarge, acme.ErrRedirect, acme.ErrInsecureURL, acme.ErrNoNonce} {
						clear = clear || errors.Is(err, target)
					}
					if !clear {
						t.Fatalf("got %v, want an error errors.Is or errors.As can classify", err)
					}
					if len(err.Error()) > 8<<10 {
						t.Errorf("error of %d bytes", len(err.Error()))
					}
				})
			}
		})
	}
}

// genKey returns a fresh P-256 key, for code without a *testing.T.
func genKey() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

// nested problems must be decoded in time linear in the depth.
func TestProblemDeeplyNested(t *testing.T) {
	t.Parallel()
	const depth = 4900 // 9800 levels of JSON nesting, under encoding/json's 10000
	doc := `{"type":"urn:ietf:params:acme:error:compound","detail":"top","subproblems":[` +
		strings.Repeat(`{"type":"urn:ietf:params:acme:error:caa","subproblems":[`, depth) + strings.Repeat(`]}`, depth) + `]}`
	var p acme.Problem
	start := time.Now()
	if err := json.Unmarshal([]byte(doc), &p); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	// Linear decoding takes milliseconds; the quadratic one took 4 s
	// (tens under -race). A second leaves room for any machine's load.
	if took := time.Since(start); took > time.Second {
		t.Errorf("decoding a %d-byte problem %d deep took %v", len(doc), depth, took)
	}
	if p.Detail != "top" || len(p.Subproblems) != 1 || p.Subproblems[0].Subproblems != nil || !errors.Is(&p, acme.ErrCAA) {
		t.Errorf("problem = %+v, want the top problem and one subproblem without its own", p)
	}
}

// jwsNonce returns the nonce of the JWS in r's body.
func jwsNonce(r *http.Request) string {
	b, _ := readBody(r)
	var jws struct{ Protected string }
	json.Unmarshal(b, &jws)
	h, _ := base64.RawURLEncoding.DecodeString(jws.Protected)
	var hdr struct{ Nonce string }
	json.Unmarshal(h, &hdr)
	return hdr.Nonce
}

func readBody(r *http.Request) ([]byte, error) {
	var buf bytes.Buffer
	_, err := buf.ReadFrom(r.Body)
	r.Body.Close()
	b := buf.Bytes()
	r.Body = readCloser{bytes.NewReader(b)}
	return b, err
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// RFC 8555, section 6.5.1: a Replay-Nonce that is not base64url is
// ignored, never sent back; a newNonce that gives none usable is
// ErrNoNonce, and a redirect there ErrRedirect.
func TestHostileNonces(t *testing.T) {
	t.Parallel()
	const garbage = "not a nonce!"
	isNonce := func(r *http.Request) bool { return r.URL.Path == "/nonce-plz" }
	cases := []struct {
		name string
		edit func(r *http.Request, a *answer)
		want error // nil: the flow must work
	}{
		{"garbage on every other answer", func(r *http.Request, a *answer) {
			if !isNonce(r) {
				a.header.Set("Replay-Nonce", garbage)
			}
		}, nil},
		{"padded base64 on every other answer", func(r *http.Request, a *answer) {
			if !isNonce(r) {
				a.header.Set("Replay-Nonce", "bm9uY2U=")
			}
		}, nil},
		{"none on any other answer", func(r *http.Request, a *answer) {
			if !isNonce(r) {
				a.header.Del("Replay-Nonce")
			}
		}, nil},
		{"none anywhere", func(r *http.Request, a *answer) { a.header.Del("Replay-Nonce") }, acme.ErrNoNonce},
		{"garbage everywhere", func(r *http.Request, a *answer) { a.header.Set("Replay-Nonce", garbage) }, acme.ErrNoNonce},
		{"oversized everywhere", func(r *http.Request, a *answer) { a.header.Set("Replay-Nonce", strings.Repeat("A", 300)) }, acme.ErrNoNonce},
		{"newNonce redirects", func(r *http.Request, a *answer) {
			a.header.Del("Replay-Nonce")
			if isNonce(r) {
				a.code = http.StatusFound
				a.header.Set("Location", "https://elsewhere.example/nonce")
				a.header.Set("Replay-Nonce", "bm9uY2U")
			}
		}, acme.ErrRedirect},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var (
				mu   sync.Mutex
				sent []string
			)
			ca, arm := mutateCA(t, false, func(r *http.Request) bool {
				if r.Method == http.MethodPost {
					n := jwsNonce(r)
					mu.Lock()
					sent = append(sent, n)
					mu.Unlock()
				}
				return r.URL.Path != "/dir"
			})
			arm(tc.edit)
			s := newHTTPSolver(t, ca)
			c := newClient(t, ca)
			_, err := c.Register(ctxT(t), acme.Account{TermsOfServiceAgreed: true})
			if err == nil {
				_, _, err = obtain(t, c, s, acme.DNSNames("nonce.hostile.example"), nil)
			}
			if tc.want == nil && err != nil {
				t.Fatalf("got %v, want the flow to work", err)
			}
			if tc.want != nil {
				wantIs(t, err, tc.want)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, n := range sent {
				if n == garbage || n == "bm9uY2U=" || len(n) > 256 {
					t.Fatalf("a request carried the invalid nonce %q", n)
				}
			}
		})
	}
}

// Semantic lies: answers that decode but must not be believed.
func TestHostileSemantics(t *testing.T) {
	t.Parallel()
	otherName := func(prefix string) func(*http.Request, map[string]any) {
		return func(r *http.Request, obj map[string]any) {
			if id, ok := obj["identifier"].(map[string]any); ok && r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, prefix) {
				id["value"] = "victim.example.org"
			}
		}
	}
	cases := []struct {
		name   string
		prefix string
		edit   func(*http.Request, map[string]any)
		want   error
		check  func(t *testing.T, s *httpSolver)
	}{
		{"authorization for another identifier", "/authZ/", otherName("/authZ/"), acme.ErrAuthorizationMismatch, func(t *testing.T, s *httpSolver) {
			if p, _, _ := s.counts(); p != 0 {
				t.Errorf("%d challenges presented, want none for a name not ordered", p)
			}
		}},
		{"valid order without a certificate URL", "/my-order/", func(_ *http.Request, obj map[string]any) {
			if obj["status"] == acme.StatusValid {
				delete(obj, "certificate")
			}
		}, acme.ErrNoCertificateURL, nil},
		{"finalize answered invalid without an error", "/finalize-order/", func(_ *http.Request, obj map[string]any) {
			obj["status"] = acme.StatusInvalid
			delete(obj, "error")
		}, acme.ErrOrderInvalid, nil},
		{"order status unknown", "/my-order/", func(_ *http.Request, obj map[string]any) { obj["status"] = "weird" }, acme.ErrMalformedResponse, nil},
		{"order going back to pending", "/my-order/", func(_ *http.Request, obj map[string]any) { obj["status"] = acme.StatusPending }, context.DeadlineExceeded, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ca := rewriteCA(t, tc.prefix, tc.edit)
			s := newHTTPSolver(t, ca)
			c := registered(t, ca)
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			_, err := c.Obtain(ctx, acme.ObtainRequest{Identifiers: acme.DNSNames("lie.example.com"), CertKey: newKey(t), Solvers: s.solvers()})
			if tc.want == context.DeadlineExceeded {
				// Only the context ends a wait for an order that never
				// gets anywhere; it must end it, and say what it waited for.
				wantIs(t, err, tc.want)
				if !strings.Contains(err.Error(), "still pending") {
					t.Errorf("error %q does not say the order stayed pending", err)
				}
				return
			}
			wantIs(t, err, tc.want)
			if tc.check != nil {
				tc.check(t, s)
			}
		})
	}
}

// An alternate chain that cannot be used is left out: the certificate is
// issued and its default chain serves.
func TestBrokenAlternateChain(t *testing.T) {
	t.Parallel()
	ca := newCA(t, testpebble.Options{Wrap: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasPrefix(r.URL.Path, "/certZ/") {
				next.ServeHTTP(w, r)
				return
			}
			if strings.Contains(r.URL.Path, "/alternate/") {
				w.Header().Set("Replay-Nonce", "YWx0")
				w.WriteHeader(http.StatusNotFound)
				return
			}
			// Hundreds of links, most malformed, the good ones repeated.
			for i := range 300 {
				switch i % 3 {
				case 0:
					w.Header().Add("Link", fmt.Sprintf(`<https://%s/certZ/x/alternate/%d>;rel="alternate"`, r.Host, i%2+1))
				case 1:
					w.Header().Add("Link", `garbage;;;rel=alternate, <>; rel="alternate", <http://insecure/x>;rel=alternate`)
				default:
					w.Header().Add("Link", `<https://`+r.Host+`/other>;rel="next"`)
				}
			}
			next.ServeHTTP(w, r)
		})
	}})
	s := newHTTPSolver(t, ca)
	c := registered(t, ca)
	cert := mustObtain(t, c, s, "alt.example.com")
	if len(cert.Chains) != 1 {
		t.Fatalf("%d chains, want the default one only", len(cert.Chains))
	}
	if n := ca.Requests("certificate"); n > 3 {
		t.Errorf("%d certificate requests, want the default chain and each distinct alternate once", n)
	}
}

// The error answer's Location is not read: a 429 with an http Location
// is still rateLimited.
func TestErrorLocationIgnored(t *testing.T) {
	t.Parallel()
	ca := faultCA(t, func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != "/order-plz" {
			return false
		}
		w.Header().Set("Replay-Nonce", "bm9uY2U")
		w.Header().Set("Location", "http://insecure.example/x")
		w.WriteHeader(http.StatusTooManyRequests)
		return true
	})
	c := registered(t, ca)
	_, err := c.NewOrder(ctxT(t), acme.OrderRequest{Identifiers: acme.DNSNames("loc.example.com")})
	wantIs(t, err, acme.ErrRateLimited)
}
