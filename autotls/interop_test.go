package autotls_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/interopenv"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/solvers"
	"github.com/tlsmint/tlsmint/storage"
)

// TestInteropManagerExternalCA runs the Manager against an ACME server
// other than the in-process Pebble, such as Caddy's acme_server (step-ca).
// It is skipped unless TLSMINT_INTEROP_DIRECTORY names the directory URL.
// The other variables are those of acme's TestInteropExternalCA:
// TLSMINT_INTEROP_ROOTS (a PEM file of the roots the CA's HTTPS server and
// its certificates chain to), TLSMINT_INTEROP_NAMES (two comma-separated
// names that the CA resolves to this machine) and TLSMINT_INTEROP_HTTP
// (where to answer http-01, default ":80"); and TLSMINT_INTEROP_TLS (where
// to serve TLS and tls-alpn-01, default ":443"), TLSMINT_INTEROP_FAIL_NAME
// (a name the CA cannot validate, default unresolvable.interop.test),
// TLSMINT_INTEROP_REFUSED_NAME (optional: a name the CA's policy refuses)
// and TLSMINT_INTEROP_IP (optional: an IP address of this machine to
// obtain a certificate for). docs/interop.md says how.
func TestInteropManagerExternalCA(t *testing.T) {
	env := interopenv.Get(t)
	dir, names, roots := env.Directory, env.Names, env.Roots
	failName := interopenv.Or("TLSMINT_INTEROP_FAIL_NAME", "unresolvable.interop.test")
	refusedName := os.Getenv("TLSMINT_INTEROP_REFUSED_NAME")
	ip := os.Getenv("TLSMINT_INTEROP_IP")

	// The front end: port 80 and port 443 forward to the Manager of the
	// moment, and count the challenges the CA sends each.
	fe := &front{}
	httpLn := testsetup.Listen(t, env.HTTPAddr)
	hs := &http.Server{Handler: fe, ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(httpLn)
	t.Cleanup(func() { hs.Close() })
	tlsLn := testsetup.Listen(t, interopenv.Or("TLSMINT_INTEROP_TLS", ":443"))
	tl := tls.NewListener(tlsLn, &tls.Config{GetCertificate: fe.getCertificate, NextProtos: []string{"h2", "http/1.1", acme.ALPNProto}})
	go testpebble.ServeHandshakes(tl)
	t.Cleanup(func() { tl.Close() })
	_, port, _ := net.SplitHostPort(tlsLn.Addr().String())
	addr := net.JoinHostPort("127.0.0.1", port)

	var logs testsetup.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() { t.Logf("manager log:\n%s", logs.String()) })
	store := storage.Dir(t.TempDir())
	hosts := append([]string{failName}, names...)
	if refusedName != "" {
		hosts = append(hosts, refusedName)
	}
	if ip != "" {
		hosts = append(hosts, ip)
	}
	newManager := func(ops *opCounter, mod func(*autotls.Manager)) *autotls.Manager {
		m := &autotls.Manager{
			Issuers:             []autotls.Issuer{{DirectoryURL: dir}},
			RootCAs:             roots,
			Storage:             store,
			Hosts:               autotls.HostWhitelist(hosts...),
			AllowIPCertificates: true,
			DefaultServerName:   ip,
			AcceptTOS:           true,
			Logger:              logger,
			ACMEObserver:        ops,
		}
		if mod != nil {
			mod(m)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	dial := func(name string) (*x509.Certificate, error) {
		d := tls.Dialer{Config: &tls.Config{ServerName: name, RootCAs: roots}}
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		return c.(*tls.Conn).ConnectionState().PeerCertificates[0], nil
	}

	// 1. tls-alpn-01, on demand in a handshake: HTTPHandler is not in use
	// yet, so it is the only challenge the Manager offers to solve.
	ops := &opCounter{}
	m := newManager(ops, nil)
	fe.set(m, nil)
	start := time.Now()
	leaf0, err := dial(names[0])
	if err != nil {
		t.Fatalf("handshake for %s (tls-alpn-01): %v", names[0], err)
	}
	t.Logf("%s obtained in the handshake (%v): serial %x, %v to %v (%v), %d tls-alpn-01 and %d http-01 validation(s); requests %v",
		names[0], time.Since(start).Round(time.Millisecond), leaf0.SerialNumber, leaf0.NotBefore, leaf0.NotAfter, leaf0.NotAfter.Sub(leaf0.NotBefore), fe.alpn.Load(), fe.http.Load(), ops.snapshot())
	if fe.alpn.Load() == 0 || fe.http.Load() != 0 {
		t.Errorf("got %d tls-alpn-01 and %d http-01 validations, want tls-alpn-01 only", fe.alpn.Load(), fe.http.Load())
	}

	// 2. http-01, once HTTPHandler is in use.
	fe.set(m, m.HTTPHandler(nil))
	alpnBefore := fe.alpn.Load()
	leaf1, err := dial(names[1])
	if err != nil {
		t.Fatalf("handshake for %s (http-01): %v", names[1], err)
	}
	t.Logf("%s obtained: serial %x; %d http-01 validation(s), %d more tls-alpn-01", names[1], leaf1.SerialNumber, fe.http.Load(), fe.alpn.Load()-alpnBefore)
	if fe.http.Load() == 0 || fe.alpn.Load() != alpnBefore {
		t.Errorf("got %d http-01 and %d more tls-alpn-01 validations, want http-01 only", fe.http.Load(), fe.alpn.Load()-alpnBefore)
	}

	// 3. The renewal plan without ARI: the Manager's own window.
	infos, err := m.Certificates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, ci := range infos {
		life := ci.NotAfter.Sub(ci.NotBefore)
		left := ci.NotAfter.Sub(ci.RenewAt)
		t.Logf("plan %s: lifetime %v, renew at %v (%v before expiry, %.2f of the lifetime), reason %q, ARI window %v..%v, next ARI poll %v",
			ci.Name, life, ci.RenewAt, left.Round(time.Second), float64(left)/float64(life), ci.RenewReason, ci.ARIWindowStart, ci.ARIWindowEnd, ci.NextARIPoll)
		if ci.RenewReason != autotls.ReasonSchedule || !ci.ARIWindowStart.IsZero() || !ci.NextARIPoll.IsZero() {
			t.Errorf("%s: reason %q, ARI window start %v, next poll %v; want the Manager's own schedule and no ARI", ci.Name, ci.RenewReason, ci.ARIWindowStart, ci.NextARIPoll)
		}
		// Ten days or less: renewal when half the lifetime is left, in a
		// window a tenth of the lifetime wide before that.
		if left < life/2 || left > life/2+life/10 {
			t.Errorf("%s: renewal %v before expiry of a %v lifetime, want between %v and %v", ci.Name, left, life, life/2, life/2+life/10)
		}
	}
	if n := ops.get(acme.OpRenewalInfo); n != 0 {
		t.Errorf("%d renewalInfo requests to a CA without renewalInfo", n)
	}

	// 4. Renewal: a new certificate, served at once.
	newOrders := ops.get(acme.OpNewOrder)
	if err := autotls.RenewForTest(m, names[0]); err != nil {
		t.Fatalf("renewing %s: %v", names[0], err)
	}
	renewed, err := dial(names[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s renewed: serial %x, %v to %v", names[0], renewed.SerialNumber, renewed.NotBefore, renewed.NotAfter)
	if renewed.SerialNumber.Cmp(leaf0.SerialNumber) == 0 {
		t.Errorf("after the renewal %s is still served serial %x", names[0], leaf0.SerialNumber)
	}
	if got := ops.get(acme.OpNewOrder) - newOrders; got != 1 {
		t.Errorf("renewal placed %d orders, want 1", got)
	}

	// 5. A restart reading the same storage: no new order, no new account.
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	ops2 := &opCounter{}
	m2 := newManager(ops2, nil)
	fe.set(m2, m2.HTTPHandler(nil))
	for _, n := range names[:2] {
		leaf, err := dial(n)
		if err != nil {
			t.Fatalf("handshake for %s after the restart: %v", n, err)
		}
		want := leaf1
		if n == names[0] {
			want = renewed
		}
		if !leaf.Equal(want) {
			t.Errorf("after the restart %s is served serial %x, want %x", n, leaf.SerialNumber, want.SerialNumber)
		}
	}
	t.Logf("after the restart: requests %v", ops2.snapshot())
	if ops2.get(acme.OpNewOrder) != 0 || ops2.get(acme.OpNewAccount) != 0 {
		t.Errorf("the restarted Manager sent %v, want no order and no account", ops2.snapshot())
	}

	// 6. A renewal whose validation fails keeps the certificate served and
	// records the CA's problem; the next one, with validation working
	// again, renews with the stored account.
	fe.fail.Store(true)
	err = autotls.RenewForTest(m2, names[1])
	fe.fail.Store(false)
	t.Logf("renewal of %s with failing validation: %v", names[1], err)
	var p *acme.Problem
	if !errors.As(err, &p) {
		t.Errorf("failed renewal: got %v, want the CA's problem", err)
	}
	if leaf, err := dial(names[1]); err != nil || !leaf.Equal(leaf1) {
		t.Errorf("after a failed renewal: handshake %v, want serial %x still served", err, leaf1.SerialNumber)
	}
	for _, ci := range mustCertificates(t, ctx, m2) {
		if ci.Name == names[1] {
			t.Logf("status of %s: last error %q, back-off until %v, renew at %v", ci.Name, ci.LastError, ci.BackoffUntil, ci.RenewAt)
			if ci.LastError == "" {
				t.Errorf("%s: no last error after a failed renewal", ci.Name)
			}
		}
	}
	autotls.EndBackoffForTest(m2, names[1])
	if err := autotls.RenewForTest(m2, names[1]); err != nil {
		t.Errorf("renewal of %s after the failure: %v", names[1], err)
	}
	if n := ops2.get(acme.OpNewAccount); n != 0 {
		t.Errorf("the restarted Manager registered %d account(s), want the stored one used", n)
	}

	// 7. The account deactivated (tlsmint account deactivate, a key
	// compromise): the next order registers a new one.
	deactivateStored(t, ctx, store, &acme.Client{DirectoryURL: dir, RootCAs: roots})
	if err := autotls.RenewForTest(m2, names[0]); err != nil {
		t.Errorf("renewal of %s after the account's deactivation: %v", names[0], err)
	}
	t.Logf("after the deactivation: requests %v", ops2.snapshot())
	if n := ops2.get(acme.OpNewAccount); n != 1 {
		t.Errorf("%d accounts registered after the deactivation, want 1", n)
	}

	// 8. A validation that fails: a prompt error carrying the CA's
	// problem, then the back-off without a new order.
	start = time.Now()
	_, err = m2.GetCertificate(&tls.ClientHelloInfo{ServerName: failName})
	took := time.Since(start)
	t.Logf("failing validation of %s ended after %v: %v", failName, took.Round(time.Millisecond), err)
	if !errors.As(err, &p) || !errors.Is(err, acme.ErrAuthorizationInvalid) {
		t.Errorf("failing validation: got %v, want ErrAuthorizationInvalid with the CA's problem", err)
	}
	if took > 15*time.Second {
		t.Errorf("failing validation took %v", took)
	}
	orders := ops2.get(acme.OpNewOrder)
	_, err = m2.GetCertificate(&tls.ClientHelloInfo{ServerName: failName})
	t.Logf("next handshake for %s: %v", failName, err)
	if !errors.Is(err, autotls.ErrBackoff) || !errors.As(err, &p) {
		t.Errorf("handshake after the failure: got %v, want ErrBackoff with the CA's problem", err)
	}
	if got := ops2.get(acme.OpNewOrder); got != orders {
		t.Errorf("%d orders during the back-off", got-orders)
	}
	// After the back-off the next attempt prefers the other challenge.
	autotls.EndBackoffForTest(m2, failName)
	_, err = m2.GetCertificate(&tls.ClientHelloInfo{ServerName: failName})
	t.Logf("attempt after the back-off for %s: %v", failName, err)
	if !errors.As(err, &p) || !strings.Contains(err.Error(), acme.ChallengeTLSALPN01) {
		t.Errorf("attempt after the back-off: got %v, want a failed tls-alpn-01 validation with the CA's problem", err)
	}
	for _, ci := range mustCertificates(t, ctx, m2) {
		if ci.Name == failName {
			t.Logf("status of %s: last error %q, back-off until %v", failName, ci.LastError, ci.BackoffUntil)
		}
	}

	// 9. A name the CA's policy refuses.
	if refusedName != "" {
		_, err := m2.GetCertificate(&tls.ClientHelloInfo{ServerName: refusedName})
		t.Logf("refused name %s: %v", refusedName, err)
		if !errors.As(err, &p) {
			t.Errorf("refused name: got %v, want the CA's problem", err)
		}
	}

	// 10. An IP address (RFC 8738), served to clients that send no SNI.
	if ip != "" {
		leaf, err := dial(ip)
		if err != nil {
			t.Errorf("handshake for %s: %v", ip, err)
		} else {
			t.Logf("%s obtained: IPs %v, %v to %v", ip, leaf.IPAddresses, leaf.NotBefore, leaf.NotAfter)
		}
		// And through tls-alpn-01, whose SNI is the reverse-lookup name.
		alpn := fe.alpn.Load()
		mi := newManager(&opCounter{}, func(m *autotls.Manager) { m.Storage = storage.Dir(t.TempDir()) })
		fe.set(mi, nil)
		if leaf, err := dial(ip); err != nil {
			t.Errorf("handshake for %s (tls-alpn-01): %v", ip, err)
		} else {
			t.Logf("%s obtained through tls-alpn-01 (%d validation(s)): serial %x", ip, fe.alpn.Load()-alpn, leaf.SerialNumber)
		}
		if fe.alpn.Load() == alpn {
			t.Errorf("no tls-alpn-01 validation for %s", ip)
		}
		fe.set(m2, m2.HTTPHandler(nil))
	}

	// 11. A profile: the CA offers none, so the order is never placed.
	ops3 := &opCounter{}
	m3 := newManager(ops3, func(m *autotls.Manager) {
		m.Issuers[0].Profile = "shortlived"
		m.Storage = storage.Dir(t.TempDir())
	})
	fe.set(m3, m3.HTTPHandler(nil))
	_, err = m3.GetCertificate(&tls.ClientHelloInfo{ServerName: names[0]})
	t.Logf("with Profile %q: %v; requests %v", m3.Issuers[0].Profile, err, ops3.snapshot())
	if !errors.Is(err, acme.ErrInvalidProfile) {
		t.Errorf("with a profile the CA does not offer: got %v, want ErrInvalidProfile", err)
	}
	if n := ops3.get(acme.OpNewOrder); n != 0 {
		t.Errorf("%d orders placed with a profile the CA does not offer", n)
	}

	// 12. Manage: both names at once through the background queue, each
	// in the protocol's few requests (validation and finalization are
	// synchronous at step-ca: no poll).
	ops4 := &opCounter{}
	m4 := newManager(ops4, func(m *autotls.Manager) { m.Storage = storage.Dir(t.TempDir()) })
	fe.set(m4, m4.HTTPHandler(nil))
	if err := m4.Manage(ctx, names[:2]...); err != nil {
		t.Fatalf("Manage: %v", err)
	}
	t.Logf("Manage(%v): requests %v", names[:2], ops4.snapshot())
	for _, n := range names[:2] {
		if _, err := dial(n); err != nil {
			t.Errorf("handshake for %s after Manage: %v", n, err)
		}
	}
	if n := ops4.get(acme.OpNewOrder); n != 2 {
		t.Errorf("Manage placed %d orders, want 2", n)
	}
}

func mustCertificates(t *testing.T, ctx context.Context, m *autotls.Manager) []record.Certificate {
	t.Helper()
	infos, err := m.Certificates(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return infos
}

// front forwards port 80 and port 443 to the Manager of the moment and
// counts the validations of each challenge type.
type front struct {
	mu         sync.Mutex
	m          *autotls.Manager
	h          http.Handler
	http, alpn atomic.Int64
	fail       atomic.Bool // answer no challenge
}

func (f *front) set(m *autotls.Manager, h http.Handler) {
	f.mu.Lock()
	f.m, f.h = m, h
	f.mu.Unlock()
}

func (f *front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	h := f.h
	f.mu.Unlock()
	if h == nil {
		http.NotFound(w, r)
		return
	}
	if strings.HasPrefix(r.URL.Path, solvers.HTTP01PathPrefix) {
		f.http.Add(1)
		if f.fail.Load() {
			http.NotFound(w, r)
			return
		}
	}
	h.ServeHTTP(w, r)
}

func (f *front) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.mu.Lock()
	m := f.m
	f.mu.Unlock()
	if solvers.IsChallengeHello(hello) {
		f.alpn.Add(1)
		if f.fail.Load() {
			return nil, errors.New("failing on purpose")
		}
	}
	return m.GetCertificate(hello)
}

// opCounter counts a Manager's exchanges with the CA by operation.
type opCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (o *opCounter) ObserveExchange(e acme.Exchange) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.n == nil {
		o.n = map[string]int{}
	}
	o.n[e.Operation]++
}

func (o *opCounter) get(op string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n[op]
}

func (o *opCounter) snapshot() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := make(map[string]int, len(o.n))
	for k, v := range o.n {
		c[k] = v
	}
	return c
}
