package testpebble

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
)

// newTestClient returns an acme.Client with a new key and no account.
func newTestClient(t *testing.T, c *CA) *acme.Client {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &acme.Client{DirectoryURL: c.DirectoryURL(), Key: key, HTTPClient: c.HTTPClient()}
}

// newOrder places an order for one name through cl.
func newOrder(t *testing.T, cl *acme.Client) error {
	t.Helper()
	_, err := cl.NewOrder(testCtx(t), acme.OrderRequest{Identifiers: acme.DNSNames("fault.example.test")})
	return err
}

// wantProblem checks that err is an ACME problem with the given status and
// type.
func wantProblem(t *testing.T, what string, err error, status int, typ *acme.Problem) *acme.Problem {
	t.Helper()
	var p *acme.Problem
	if !errors.As(err, &p) || p.Status != status || !errors.Is(err, typ) {
		t.Fatalf("%s: got %v, want a %d %s problem", what, err, status, typ.Type)
	}
	return p
}

// checkProblemResponse checks a raw answer of a fault.
func checkProblemResponse(t *testing.T, resp *http.Response, body []byte, status int, typ string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status: got %d, want %d; body %s", resp.StatusCode, status, body)
	}
	if got := resp.Header.Get("Content-Type"); got != "application/problem+json" {
		t.Errorf("Content-Type: got %q, want application/problem+json", got)
	}
	if resp.Header.Get("Replay-Nonce") == "" {
		t.Errorf("Replay-Nonce: got none, want a fresh nonce")
	}
	var p problemDoc
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("problem document %s: %v", body, err)
	}
	if want := "urn:ietf:params:acme:error:" + typ; p.Type != want || p.Status != status {
		t.Errorf("problem document: got type %q status %d, want %q %d", p.Type, p.Status, want, status)
	}
}

func TestSetDown503(t *testing.T) {
	t.Parallel()
	c := newCA(t, Options{})
	cl := newClient(t, c)
	base := strings.TrimSuffix(c.DirectoryURL(), "/dir")
	if err := c.SetDown(Down503); err != nil {
		t.Fatalf("SetDown(Down503): %v", err)
	}

	resp, body := get(t, c, http.MethodGet, c.DirectoryURL())
	checkProblemResponse(t, resp, body, http.StatusServiceUnavailable, "serverInternal")
	if got := resp.Header.Get("Retry-After"); got != "" {
		t.Errorf("Retry-After: got %q, want none", got)
	}
	resp, body = get(t, c, http.MethodHead, base+"/nonce-plz")
	if resp.StatusCode != http.StatusServiceUnavailable || len(body) != 0 {
		t.Errorf("HEAD newNonce: got status %d and %d bytes, want 503 and no body", resp.StatusCode, len(body))
	}
	if resp, body := get(t, c, http.MethodGet, base+"/roots/0"); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /roots/0 while down: got status %d, want 200 (management keeps working); body %s", resp.StatusCode, body)
	}

	// newOrder is not safe to repeat: the client sends it once.
	orders := c.Requests("newOrder")
	wantProblem(t, "NewOrder while down", newOrder(t, cl), http.StatusServiceUnavailable, acme.ErrServerInternal)
	if got := c.Requests("newOrder") - orders; got != 1 {
		t.Errorf("newOrder requests while down: got %d, want 1", got)
	}

	if err := c.SetDown(Up); err != nil {
		t.Fatalf("SetDown(Up): %v", err)
	}
	// The client's only nonce came with the 503: Pebble accepts it, so the
	// order takes one request and no newNonce.
	orders, nonces := c.Requests("newOrder"), c.Requests("newNonce")
	if err := newOrder(t, cl); err != nil {
		t.Fatalf("NewOrder after Up: %v", err)
	}
	if got := c.Requests("newOrder") - orders; got != 1 {
		t.Errorf("newOrder requests after Up: got %d, want 1 (the nonce of the 503 was rejected?)", got)
	}
	if got := c.Requests("newNonce") - nonces; got != 0 {
		t.Errorf("newNonce requests after Up: got %d, want 0", got)
	}
}

func TestSetDownRefuse(t *testing.T) {
	t.Parallel()
	c := newCA(t, Options{})
	cl := newClient(t, c) // leaves a connection open in the CA's transport
	dirURL := c.DirectoryURL()
	u, err := url.Parse(dirURL)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetDown(Refuse); err != nil {
		t.Fatalf("SetDown(Refuse): %v", err)
	}
	if conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		if conn != nil {
			conn.Close()
		}
		t.Fatalf("dial %s while refusing: got %v, want connection refused", u.Host, err)
	}
	logged := len(c.RequestLog())
	if err := newOrder(t, cl); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("NewOrder while refusing: got %v, want connection refused", err)
	}
	if got := len(c.RequestLog()); got != logged {
		t.Errorf("requests logged while refusing: got %d, want %d", got, logged)
	}
	if err := c.SetDown(Refuse); err != nil {
		t.Errorf("SetDown(Refuse) twice: %v", err)
	}

	// Refuse → Down503 listens again, answering 503.
	if err := c.SetDown(Down503); err != nil {
		t.Fatalf("SetDown(Down503) after Refuse: %v", err)
	}
	resp, body := get(t, c, http.MethodGet, dirURL)
	checkProblemResponse(t, resp, body, http.StatusServiceUnavailable, "serverInternal")

	if err := c.SetDown(Refuse); err != nil {
		t.Fatalf("SetDown(Refuse): %v", err)
	}
	if err := c.SetDown(Up); err != nil {
		t.Fatalf("SetDown(Up): %v", err)
	}
	if got := c.DirectoryURL(); got != dirURL {
		t.Errorf("DirectoryURL after Refuse and Up: got %q, want %q", got, dirURL)
	}
	if err := newOrder(t, cl); err != nil {
		t.Errorf("NewOrder after Up: %v", err)
	}

	if err := c.SetDown(DownMode(7)); err == nil {
		t.Errorf("SetDown(DownMode(7)): got nil, want an error")
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.SetDown(Up); err == nil {
		t.Errorf("SetDown(Up) after Close: got nil, want an error")
	}
	if conn, err := net.DialTimeout("tcp", u.Host, 5*time.Second); err == nil {
		conn.Close()
		t.Errorf("dial after Close and SetDown(Up): connected, want refused")
	}
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	c := newCA(t, Options{})
	cl := newClient(t, c)

	tests := []struct {
		retryAfter, want time.Duration // set, and seen by the client
	}{
		{90 * time.Second, 90 * time.Second},
		{1500 * time.Millisecond, 2 * time.Second}, // whole seconds, rounded up
		{0, 0}, // no Retry-After
	}
	for _, tt := range tests {
		if err := c.RateLimit("newOrder", tt.retryAfter, 2); err != nil {
			t.Fatalf("RateLimit(newOrder, %v, 2): %v", tt.retryAfter, err)
		}
		start := len(c.RequestLog())
		for i := range 2 {
			p := wantProblem(t, "NewOrder under the limit", newOrder(t, cl), http.StatusTooManyRequests, acme.ErrRateLimited)
			if p.RetryAfter != tt.want {
				t.Errorf("limit %v, request %d: RetryAfter: got %v, want %v", tt.retryAfter, i, p.RetryAfter, tt.want)
			}
		}
		if err := newOrder(t, cl); err != nil {
			t.Fatalf("limit %v: third NewOrder: got %v, want success", tt.retryAfter, err)
		}
		var statuses []int
		for _, r := range c.RequestLog()[start:] {
			if r.Endpoint == "newOrder" {
				statuses = append(statuses, r.Status)
			}
		}
		if len(statuses) != 3 || statuses[0] != 429 || statuses[1] != 429 || statuses[2] != 201 {
			t.Errorf("limit %v: logged newOrder statuses: got %v, want [429 429 201]", tt.retryAfter, statuses)
		}
	}
	if got := c.Requests("newOrder"); got != 9 {
		t.Errorf("Requests(newOrder): got %d, want 9 (limited requests count)", got)
	}

	// The raw answer.
	if err := c.RateLimit("directory", 3*time.Second, 1); err != nil {
		t.Fatal(err)
	}
	resp, body := get(t, c, http.MethodGet, c.DirectoryURL())
	checkProblemResponse(t, resp, body, http.StatusTooManyRequests, "rateLimited")
	if got := resp.Header.Get("Retry-After"); got != "3" {
		t.Errorf("Retry-After: got %q, want \"3\"", got)
	}
	fetchDirectory(t, c) // the limit of one is used up

	// n < 0 lasts until cleared; other endpoints are not affected.
	if err := c.RateLimit("newAccount", time.Minute, -1); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		other := newTestClient(t, c)
		_, err := other.Register(testCtx(t), acme.Account{TermsOfServiceAgreed: true})
		wantProblem(t, "Register under an endless limit", err, http.StatusTooManyRequests, acme.ErrRateLimited)
	}
	if err := newOrder(t, cl); err != nil {
		t.Errorf("NewOrder while newAccount is limited: %v", err)
	}
	if err := c.RateLimit("newAccount", 0, 0); err != nil {
		t.Fatal(err)
	}
	newClient(t, c)

	// Down503 comes first and does not use up the limit.
	if err := c.RateLimit("newOrder", time.Second, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.SetDown(Down503); err != nil {
		t.Fatal(err)
	}
	wantProblem(t, "NewOrder while down and limited", newOrder(t, cl), http.StatusServiceUnavailable, acme.ErrServerInternal)
	if err := c.SetDown(Up); err != nil {
		t.Fatal(err)
	}
	wantProblem(t, "NewOrder once up again", newOrder(t, cl), http.StatusTooManyRequests, acme.ErrRateLimited)

	for _, name := range []string{"management", "newOrders", ""} {
		if err := c.RateLimit(name, time.Second, 1); err == nil {
			t.Errorf("RateLimit(%q): got nil, want an error", name)
		}
	}
}
