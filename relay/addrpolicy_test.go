package relay_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/relay"
)

// countingListener serves h on a loopback port and counts the
// connections it accepted.
type countingListener struct {
	net.Listener
	accepted atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepted.Add(1)
	}
	return c, err
}

func serveCounting(t testing.TB, h http.Handler) *countingListener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(cl)
	t.Cleanup(func() { srv.Close() })
	return cl
}

// recordingDialer connects every address it is asked for to one
// listener, as if the network had a server there (a metadata service, a
// private host), and records the addresses asked for.
type recordingDialer struct {
	to   string
	fail map[string]bool // addresses whose dial fails (as unreachable)
	mu   sync.Mutex
	got  []string
}

func (d *recordingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	d.mu.Lock()
	d.got = append(d.got, addr)
	d.mu.Unlock()
	if d.fail[addr] {
		return nil, errors.New("network is unreachable")
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, d.to)
}

func (d *recordingDialer) dialled() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.got...)
}

// mapResolver answers names from a map; a name with several answers
// gives the next one at each look-up (the last one for ever after), as a
// rebinding DNS server does.
type mapResolver struct {
	mu      sync.Mutex
	answers map[string][][]netip.Addr
	asked   map[string]int
}

func newMapResolver() *mapResolver {
	return &mapResolver{answers: map[string][][]netip.Addr{}, asked: map[string]int{}}
}

// set makes host answer addrs (one answer of several addresses).
func (m *mapResolver) set(host string, addrs ...string) { m.sequence(host, strings.Join(addrs, ",")) }

// sequence makes host give each answer in turn ("a,b" is one answer of
// two addresses).
func (m *mapResolver) sequence(host string, answers ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, a := range answers {
		var as []netip.Addr
		for _, s := range strings.Split(a, ",") {
			as = append(as, netip.MustParseAddr(s))
		}
		m.answers[host] = append(m.answers[host], as)
	}
}

func (m *mapResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.answers[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	i := min(m.asked[host], len(a)-1)
	m.asked[host]++
	return a[i], nil
}

func (m *mapResolver) LookupTXT(_ context.Context, name string) ([]string, error) {
	return nil, &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

// TestValidatorAddressPolicy: names resolving to loopback, the metadata
// service's link-local address, private, shared, unique-local and
// IPv4-mapped addresses, address identifiers in those ranges, a public
// target redirecting to loopback, and a rebinding name (public first,
// loopback next) are all refused before anything is dialled, with a
// detail naming the address; each succeeds once the call allows the
// range.
func TestValidatorAddressPolicy(t *testing.T) {
	t.Parallel()
	path := "/.well-known/acme-challenge/" + vaToken
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Host {
		case "public.example.com", "rebind.example.com":
			if r.Host == "rebind.example.com" && r.URL.Query().Get("hop") == "" {
				http.Redirect(w, r, "http://rebind.example.com"+path+"?hop=2", http.StatusFound)
				return
			}
			if r.Host == "public.example.com" {
				http.Redirect(w, r, "http://127.0.0.1"+path, http.StatusFound)
				return
			}
		case "named-redirect.example.com":
			http.Redirect(w, r, "http://loopback.example.com"+path, http.StatusFound)
			return
		}
		w.Write([]byte(vaKeyAuth))
	})
	res := newMapResolver()
	res.set("loopback.example.com", "127.0.0.1")
	res.set("metadata.example.com", "169.254.169.254")
	res.set("private.example.com", "10.0.0.5")
	res.set("shared.example.com", "100.64.1.1")
	res.set("ula.example.com", "fd00::5")
	res.set("mapped.example.com", "::ffff:127.0.0.1")
	res.set("mapped-private.example.com", "::ffff:192.168.1.1")
	res.set("doc.example.com", "192.0.2.7")
	res.set("public.example.com", "8.8.8.8")
	res.set("named-redirect.example.com", "8.8.4.4")
	ip := func(s string) acme.Identifier { return acme.Identifier{Type: acme.IdentifierIP, Value: s} }
	for _, tc := range []struct {
		name     string
		id       acme.Identifier
		addr     string   // the address the detail must name
		allow    string   // the range that lets it through
		reach    []string // the addresses dialled once allowed
		typ      string
		rebind   bool
		preDials int // connections made before the refused one (public hops)
	}{
		{name: "loopback", id: dnsID("loopback.example.com"), addr: "127.0.0.1", allow: "127.0.0.0/8", reach: []string{"127.0.0.1:80"}},
		{name: "metadata service", id: dnsID("metadata.example.com"), addr: "169.254.169.254", allow: "169.254.169.254/32", reach: []string{"169.254.169.254:80"}},
		{name: "private", id: dnsID("private.example.com"), addr: "10.0.0.5", allow: "10.0.0.0/8", reach: []string{"10.0.0.5:80"}},
		{name: "shared", id: dnsID("shared.example.com"), addr: "100.64.1.1", allow: "100.64.0.0/10", reach: []string{"100.64.1.1:80"}},
		{name: "unique local", id: dnsID("ula.example.com"), addr: "fd00::5", allow: "fd00::/8", reach: []string{"[fd00::5]:80"}},
		{name: "IPv4-mapped loopback", id: dnsID("mapped.example.com"), addr: "127.0.0.1", allow: "127.0.0.1/32", reach: []string{"127.0.0.1:80"}},
		{name: "IPv4-mapped private", id: dnsID("mapped-private.example.com"), addr: "192.168.1.1", allow: "192.168.0.0/16", reach: []string{"192.168.1.1:80"}},
		{name: "documentation", id: dnsID("doc.example.com"), addr: "192.0.2.7", allow: "192.0.2.0/24", reach: []string{"192.0.2.7:80"}},
		{name: "address identifier", id: ip("127.0.0.1"), addr: "127.0.0.1", allow: "127.0.0.0/8", reach: []string{"127.0.0.1:80"}},
		{name: "link-local address identifier", id: ip("169.254.169.254"), addr: "169.254.169.254", allow: "169.254.0.0/16", reach: []string{"169.254.169.254:80"}},
		{name: "IPv4-mapped address identifier", id: ip("::ffff:10.1.2.3"), addr: "10.1.2.3", allow: "10.0.0.0/8", reach: []string{"10.1.2.3:80"}},
		{name: "public redirecting to loopback", id: dnsID("public.example.com"), addr: "127.0.0.1", allow: "127.0.0.0/8", reach: []string{"8.8.8.8:80", "127.0.0.1:80"}, preDials: 1},
		{name: "public redirecting to a loopback name", id: dnsID("named-redirect.example.com"), addr: "127.0.0.1", allow: "127.0.0.0/8", reach: []string{"8.8.4.4:80", "127.0.0.1:80"}, preDials: 1},
		{name: "rebinding", id: dnsID("rebind.example.com"), addr: "127.0.0.1", allow: "127.0.0.0/8", reach: []string{"8.8.8.8:80", "127.0.0.1:80"}, rebind: true, preDials: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ln := serveCounting(t, h)
			res := res
			if tc.rebind {
				// Each run gets its own rebinding name: public at the first
				// look-up, loopback at every later one.
				res = newMapResolver()
				res.sequence("rebind.example.com", "8.8.8.8", "127.0.0.1")
			}
			d := &recordingDialer{to: ln.Addr().String()}
			v := &relay.Validator{Resolver: res, Dialer: d, Timeout: 5 * time.Second}
			err := v.Validate(ctxT(t), acme.ChallengeHTTP01, tc.id, vaToken, vaKeyAuth)
			wantVA(t, err, "connection")
			p := problemOf(t, err)
			if !strings.Contains(p.Detail, tc.addr) || !strings.Contains(p.Detail, "not allowed for this tenant") || !strings.Contains(p.Detail, "validation_targets") {
				t.Errorf("detail %q does not say that %s is not allowed for this tenant and how to allow it", p.Detail, tc.addr)
			}
			if got := d.dialled(); len(got) != tc.preDials {
				t.Errorf("dialled %v before refusing, want %d public hop(s) only", got, tc.preDials)
			}
			if n := ln.accepted.Load(); n != int64(tc.preDials) {
				t.Errorf("the listener accepted %d connections, want %d", n, tc.preDials)
			}

			if tc.rebind {
				res = newMapResolver()
				res.sequence("rebind.example.com", "8.8.8.8", "127.0.0.1")
				v.Resolver = res
			}
			d2 := &recordingDialer{to: ln.Addr().String()}
			v.Dialer = d2
			err = v.Validate(ctxT(t), acme.ChallengeHTTP01, tc.id, vaToken, vaKeyAuth, relay.AllowTargets(netip.MustParsePrefix(tc.allow)))
			wantVA(t, err, "")
			if got := d2.dialled(); fmt.Sprint(got) != fmt.Sprint(tc.reach) {
				t.Errorf("allowed %s: dialled %v, want %v", tc.allow, got, tc.reach)
			}
		})
	}
	t.Run("another range allowed", func(t *testing.T) {
		t.Parallel()
		ln := serveCounting(t, h)
		d := &recordingDialer{to: ln.Addr().String()}
		v := &relay.Validator{Resolver: res, Dialer: d, Timeout: 5 * time.Second}
		err := v.Validate(ctxT(t), acme.ChallengeHTTP01, dnsID("metadata.example.com"), vaToken, vaKeyAuth, relay.AllowTargets(netip.MustParsePrefix("10.0.0.0/8")))
		wantVA(t, err, "connection")
		if got := d.dialled(); len(got) != 0 {
			t.Errorf("dialled %v, want nothing", got)
		}
	})
	t.Run("tls-alpn-01", func(t *testing.T) {
		t.Parallel()
		ln := serveCounting(t, h)
		d := &recordingDialer{to: ln.Addr().String()}
		v := &relay.Validator{Resolver: res, Dialer: d, Timeout: 5 * time.Second}
		wantVA(t, v.Validate(ctxT(t), acme.ChallengeTLSALPN01, dnsID("metadata.example.com"), vaToken, vaKeyAuth), "connection")
		if got := d.dialled(); len(got) != 0 || ln.accepted.Load() != 0 {
			t.Errorf("dialled %v, want nothing", got)
		}
	})
}

// TestValidatorReservedRanges checks the table against addresses of
// each kind, with the public ones beside them.
func TestValidatorReservedRanges(t *testing.T) {
	t.Parallel()
	reserved := []string{
		"0.0.0.0", "0.1.2.3", "10.255.0.1", "100.127.255.254", "127.8.8.8", "169.254.0.1", "172.31.255.255",
		"192.0.0.8", "192.0.2.200", "192.168.99.1", "198.19.0.1", "198.51.100.1", "203.0.113.9",
		"224.0.0.251", "239.255.255.250", "240.0.0.1", "255.255.255.255",
		"::", "::1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::10.0.0.1", "64:ff9b::7f00:1", "64:ff9b:1::1",
		"100::1", "2001::1", "2001:2::1", "2001:db8::1", "2002:7f00:1::", "3fff::1", "fc00::1", "fd12:3456::1", "fe80::1", "fec0::1", "ff02::1",
	}
	public := []string{"8.8.8.8", "1.1.1.1", "100.128.0.1", "172.32.0.1", "192.0.3.1", "198.20.0.1", "223.255.255.255", "::ffff:8.8.8.8", "64:ff9b::808:808", "2001:4860:4860::8888", "2606:4700::1111"}
	res := newMapResolver()
	for _, a := range append(append([]string(nil), reserved...), public...) {
		res.set("h"+strings.NewReplacer(".", "-", ":", "-").Replace(a)+".example.com", a)
	}
	for _, a := range reserved {
		d := &recordingDialer{to: "127.0.0.1:1", fail: map[string]bool{}}
		v := &relay.Validator{Resolver: res, Dialer: d, Timeout: time.Second}
		err := v.Validate(ctxT(t), acme.ChallengeHTTP01, dnsID("h"+strings.NewReplacer(".", "-", ":", "-").Replace(a)+".example.com"), vaToken, vaKeyAuth)
		if p := problemOf(t, err); !strings.Contains(p.Detail, "not allowed for this tenant") || len(d.dialled()) != 0 {
			t.Errorf("%s: got %q, dialled %v; want a refusal before dialling", a, p.Detail, d.dialled())
		}
	}
	for _, a := range public {
		d := &recordingDialer{to: "127.0.0.1:1", fail: map[string]bool{}}
		v := &relay.Validator{Resolver: res, Dialer: d, Timeout: time.Second}
		v.Validate(ctxT(t), acme.ChallengeHTTP01, dnsID("h"+strings.NewReplacer(".", "-", ":", "-").Replace(a)+".example.com"), vaToken, vaKeyAuth)
		if len(d.dialled()) != 1 {
			t.Errorf("%s: dialled %v, want the public address", a, d.dialled())
		}
	}
}

// TestValidatorHappyEyeballs: with two IPv6 addresses and one IPv4
// address, the validator tries the first IPv6 address and then the IPv4
// one (not the second IPv6); reserved addresses among a name's are
// skipped, public ones still tried.
func TestValidatorHappyEyeballs(t *testing.T) {
	t.Parallel()
	ln := serveCounting(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(vaKeyAuth)) }))
	res := newMapResolver()
	res.set("dual.example.com", "2001:4860::1", "2001:4860::2", "8.8.8.8")
	res.set("mixed.example.com", "10.0.0.1", "fd00::1", "2001:4860::3", "8.8.4.4")
	d := &recordingDialer{to: ln.Addr().String(), fail: map[string]bool{"[2001:4860::1]:80": true}}
	v := &relay.Validator{Resolver: res, Dialer: d, Timeout: 5 * time.Second}
	wantVA(t, v.Validate(ctxT(t), acme.ChallengeHTTP01, dnsID("dual.example.com"), vaToken, vaKeyAuth), "")
	if got, want := fmt.Sprint(d.dialled()), "[[2001:4860::1]:80 8.8.8.8:80]"; got != want {
		t.Fatalf("dialled %s, want %s", got, want)
	}
	d2 := &recordingDialer{to: ln.Addr().String(), fail: map[string]bool{"[2001:4860::3]:80": true}}
	v.Dialer = d2
	wantVA(t, v.Validate(ctxT(t), acme.ChallengeHTTP01, dnsID("mixed.example.com"), vaToken, vaKeyAuth), "")
	if got, want := fmt.Sprint(d2.dialled()), "[[2001:4860::3]:80 8.8.4.4:80]"; got != want {
		t.Fatalf("dialled %s, want %s", got, want)
	}
}

// TestValidatorRedirectTargetNotDescribed: what an (allowed) redirect
// target answered — its status, its length — is not in the problem.
func TestValidatorRedirectTargetNotDescribed(t *testing.T) {
	t.Parallel()
	path := "/.well-known/acme-challenge/" + vaToken
	ln := serveCounting(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Host {
		case "public.example.com":
			http.Redirect(w, r, "http://internal.example.com"+path, http.StatusFound)
		case "public-ok.example.com":
			http.Redirect(w, r, "http://internal-ok.example.com"+path, http.StatusFound)
		case "internal-ok.example.com":
			w.Write([]byte("secret internal page of 37 bytes....."))
		default:
			w.WriteHeader(http.StatusTeapot)
			w.Write([]byte("internal"))
		}
	}))
	res := newMapResolver()
	res.set("public.example.com", "8.8.8.8")
	res.set("public-ok.example.com", "8.8.8.8")
	res.set("internal.example.com", "10.0.0.9")
	res.set("internal-ok.example.com", "10.0.0.9")
	v := &relay.Validator{Resolver: res, Dialer: &recordingDialer{to: ln.Addr().String()}, Timeout: 5 * time.Second}
	for _, name := range []string{"public.example.com", "public-ok.example.com"} {
		err := v.Validate(ctxT(t), acme.ChallengeHTTP01, dnsID(name), vaToken, vaKeyAuth, relay.AllowTargets(netip.MustParsePrefix("10.0.0.0/8")))
		p := problemOf(t, err)
		for _, leak := range []string{"418", "37", "8-byte", "secret", "internal page"} {
			if strings.Contains(p.Detail, leak) {
				t.Errorf("%s: detail %q tells what the redirect target answered (%q)", name, p.Detail, leak)
			}
		}
		if !strings.Contains(p.Detail, "redirect target") {
			t.Errorf("%s: detail %q does not say the redirect target failed", name, p.Detail)
		}
	}
}

// TestRelayValidationTargets: through the relay, a tenant whose names
// resolve to loopback fails its validation with a problem naming the
// address, and the client's server gets no connection; once the tenant's
// policy allows loopback, the same order succeeds.
func TestRelayValidationTargets(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOptions{})
	ln := serveCounting(t, e.down)
	e.srv.Validator.HTTPPort = ln.Addr().(*net.TCPAddr).Port
	pol := examplePolicy()
	pol.ValidationTargets = nil
	eab := e.tenant(t, "internal", pol)
	c := e.client(t)
	if _, err := c.Register(ctxT(t), acme.Account{ExternalAccountBinding: eab}); err != nil {
		t.Fatal(err)
	}
	_, err := e.obtain(t, c, acme.DNSNames("web.example.com"), nil)
	p := problemOf(t, err)
	if !strings.Contains(p.Detail, "127.0.0.1") || !strings.Contains(p.Detail, "not allowed for this tenant") {
		t.Fatalf("got %v, want a problem saying 127.0.0.1 is not allowed for this tenant", err)
	}
	if n := ln.accepted.Load(); n != 0 {
		t.Fatalf("the client's server got %d connections, want none", n)
	}
	pol.ValidationTargets = ipRanges("127.0.0.0/8")
	if err := e.srv.PutTenant(ctxT(t), relay.Tenant{ID: "internal", Policy: pol}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.obtain(t, c, acme.DNSNames("web.example.com"), nil); err != nil {
		t.Fatalf("with loopback allowed: %v", err)
	}
	if n := ln.accepted.Load(); n == 0 {
		t.Fatal("the client's server got no connection once allowed")
	}
}
