package testpebble

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// newCA starts a CA for the test and closes it at the end.
func newCA(t *testing.T, opts Options) *CA {
	t.Helper()
	c, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return c
}

// get sends a GET (or HEAD) with a User-Agent, as Pebble demands.
func get(t *testing.T, c *CA, method, url string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("User-Agent", "testpebble-test")
	resp, err := c.HTTPClient().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp, body
}

// directory is the part of the ACME directory the tests look at.
type directory struct {
	NewNonce    string `json:"newNonce"`
	NewAccount  string `json:"newAccount"`
	NewOrder    string `json:"newOrder"`
	RevokeCert  string `json:"revokeCert"`
	KeyChange   string `json:"keyChange"`
	RenewalInfo string `json:"renewalInfo"`
	Meta        struct {
		ExternalAccountRequired bool              `json:"externalAccountRequired"`
		Profiles                map[string]string `json:"profiles"`
	} `json:"meta"`
}

func fetchDirectory(t *testing.T, c *CA) directory {
	t.Helper()
	resp, body := get(t, c, http.MethodGet, c.DirectoryURL())
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET directory: status %d, want 200; body %s", resp.StatusCode, body)
	}
	var dir directory
	if err := json.Unmarshal(body, &dir); err != nil {
		t.Fatalf("decode directory: %v; body %s", err, body)
	}
	return dir
}

func TestDirectory(t *testing.T) {
	t.Parallel()
	c := newCA(t, Options{
		RequireEAB: true,
		Profiles:   map[string]time.Duration{"classic": 0, "shortlived": 6 * 24 * time.Hour},
	})
	if !strings.HasPrefix(c.DirectoryURL(), "https://127.0.0.1:") || !strings.HasSuffix(c.DirectoryURL(), "/dir") {
		t.Errorf("DirectoryURL() = %q, want https://127.0.0.1:PORT/dir", c.DirectoryURL())
	}
	dir := fetchDirectory(t, c)
	base := strings.TrimSuffix(c.DirectoryURL(), "/dir")
	for name, got := range map[string]string{
		"newNonce": dir.NewNonce, "newAccount": dir.NewAccount, "newOrder": dir.NewOrder,
		"revokeCert": dir.RevokeCert, "keyChange": dir.KeyChange, "renewalInfo": dir.RenewalInfo,
	} {
		if !strings.HasPrefix(got, base+"/") {
			t.Errorf("directory %s = %q, want a URL under %s", name, got, base)
		}
	}
	if !dir.Meta.ExternalAccountRequired {
		t.Errorf("meta.externalAccountRequired = false, want true")
	}
	var profiles []string
	for p := range dir.Meta.Profiles {
		profiles = append(profiles, p)
	}
	slices.Sort(profiles)
	if want := []string{"classic", "shortlived"}; !slices.Equal(profiles, want) {
		t.Errorf("meta.profiles = %v, want %v", profiles, want)
	}
}

func TestDefaultProfile(t *testing.T) {
	t.Parallel()
	c := newCA(t, Options{})
	dir := fetchDirectory(t, c)
	if _, ok := dir.Meta.Profiles["default"]; !ok || len(dir.Meta.Profiles) != 1 {
		t.Errorf("meta.profiles = %v, want just \"default\"", dir.Meta.Profiles)
	}
	if dir.Meta.ExternalAccountRequired {
		t.Errorf("meta.externalAccountRequired = true, want false")
	}
}

func TestOptionsRejected(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts Options
	}{
		{"nonce reject over 100", Options{NonceRejectPercent: 101}},
		{"negative authz reuse", Options{AuthzReusePercent: -1}},
		{"negative chain length", Options{ChainLength: -1}},
		{"port too big", Options{HTTPPort: 70000}},
		{"unknown key algorithm", Options{KeyAlgorithm: "dsa"}},
		{"negative validity", Options{Profiles: map[string]time.Duration{"p": -time.Hour}}},
		{"bad EAB key", Options{EABKeys: map[string]string{"kid": "not base64!"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.opts)
			if err == nil {
				c.Close()
				t.Fatalf("New(%+v) succeeded, want an error", tt.opts)
			}
		})
	}
}

func TestRoots(t *testing.T) {
	t.Parallel()
	c := newCA(t, Options{AlternateRoots: 2, ChainLength: 2})
	roots := c.Roots()
	if len(roots) != 3 {
		t.Fatalf("len(Roots()) = %d, want 3", len(roots))
	}
	for i, r := range roots {
		if !r.IsCA {
			t.Errorf("root %d is not a CA", i)
		}
		if _, err := r.Verify(x509VerifyOptions(c)); err != nil {
			t.Errorf("root %d does not verify against RootPool: %v", i, err)
		}
	}
	// The management path serves the same default root.
	resp, body := get(t, c, http.MethodGet, strings.TrimSuffix(c.DirectoryURL(), "/dir")+"/roots/0")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /roots/0: status %d", resp.StatusCode)
	}
	if got := parsePEMChain(t, body); len(got) != 1 || !got[0].Equal(roots[0]) {
		t.Errorf("GET /roots/0 is not Roots()[0]")
	}
	if got := c.Requests("management"); got != 1 {
		t.Errorf("Requests(management) = %d, want 1", got)
	}
}

func TestTwoCAs(t *testing.T) {
	t.Parallel()
	var wg sync.WaitGroup
	cas := make([]*CA, 2)
	errs := make([]error, 2)
	for i := range cas {
		wg.Go(func() { cas[i], errs[i] = New(Options{AlwaysValid: i == 0}) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("New %d: %v", i, err)
		}
		t.Cleanup(func() { cas[i].Close() })
	}
	a, b := cas[0], cas[1]
	for _, tt := range []struct {
		what string
		a, b any
	}{
		{"DirectoryURL", a.DirectoryURL(), b.DirectoryURL()},
		{"HTTPPort", a.HTTPPort(), b.HTTPPort()},
		{"TLSPort", a.TLSPort(), b.TLSPort()},
		{"DNS().Addr", a.DNS().Addr(), b.DNS().Addr()},
	} {
		if tt.a == tt.b {
			t.Errorf("both CAs have %s %v", tt.what, tt.a)
		}
	}
	if a.HTTPPort() == a.TLSPort() {
		t.Errorf("HTTPPort() == TLSPort() == %d", a.HTTPPort())
	}
	if a.Roots()[0].Equal(b.Roots()[0]) {
		t.Errorf("both CAs have the same root")
	}
	// Each CA's client trusts only its own server.
	fetchDirectory(t, a)
	fetchDirectory(t, b)
	req, _ := http.NewRequest(http.MethodGet, b.DirectoryURL(), nil)
	req.Header.Set("User-Agent", "testpebble-test")
	if resp, err := a.HTTPClient().Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("CA a's HTTPClient trusted CA b's server")
	}
}

func TestExplicitPorts(t *testing.T) {
	t.Parallel()
	c := newCA(t, Options{HTTPPort: 5002, TLSPort: 5001})
	if c.HTTPPort() != 5002 || c.TLSPort() != 5001 {
		t.Errorf("ports = %d, %d, want 5002, 5001", c.HTTPPort(), c.TLSPort())
	}
}

func TestClose(t *testing.T) {
	t.Parallel()
	c, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	fetchDirectory(t, c)
	client := c.HTTPClient()
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	req, _ := http.NewRequest(http.MethodGet, c.DirectoryURL(), nil)
	req.Header.Set("User-Agent", "testpebble-test")
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
		t.Errorf("GET directory after Close succeeded")
	}
	conn, err := net.DialTimeout("tcp", c.DNS().Addr(), time.Second)
	if err == nil {
		conn.Close()
		t.Errorf("DNS server still accepts connections after Close")
	}
}

func TestWrapAndCounters(t *testing.T) {
	t.Parallel()
	var seen atomic.Int64
	var failNonce atomic.Bool
	c := newCA(t, Options{Wrap: func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			seen.Add(1)
			if failNonce.Load() && strings.HasPrefix(r.URL.Path, "/nonce-plz") {
				http.Error(w, "<html>bad gateway</html>", http.StatusBadGateway)
				return
			}
			next.ServeHTTP(w, r)
		})
	}})
	dir := fetchDirectory(t, c)
	for range 2 {
		resp, _ := get(t, c, http.MethodHead, dir.NewNonce)
		if resp.Header.Get("Replay-Nonce") == "" {
			t.Errorf("HEAD newNonce: no Replay-Nonce")
		}
	}
	failNonce.Store(true)
	if resp, _ := get(t, c, http.MethodHead, dir.NewNonce); resp.StatusCode != http.StatusBadGateway {
		t.Errorf("HEAD newNonce through the fault: status %d, want 502", resp.StatusCode)
	}
	get(t, c, http.MethodGet, strings.TrimSuffix(c.DirectoryURL(), "/dir")+"/nowhere")

	if got := seen.Load(); got != 5 {
		t.Errorf("wrapper saw %d requests, want 5", got)
	}
	want := map[string]int{"directory": 1, "newNonce": 3, "other": 1}
	if got := c.RequestCounts(); !mapsEqual(got, want) {
		t.Errorf("RequestCounts() = %v, want %v", got, want)
	}
	if got := c.Requests("newNonce"); got != 3 {
		t.Errorf("Requests(newNonce) = %d, want 3", got)
	}
	if got := c.Requests("no such endpoint"); got != 0 {
		t.Errorf("Requests(unknown) = %d, want 0", got)
	}
	c.ResetCounts()
	if got := c.RequestCounts(); len(got) != 0 {
		t.Errorf("RequestCounts() after ResetCounts = %v, want empty", got)
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"/dir":                  "directory",
		"/nonce-plz":            "newNonce",
		"/sign-me-up":           "newAccount",
		"/my-account/1":         "account",
		"/order-plz":            "newOrder",
		"/my-order/abc":         "order",
		"/finalize-order/abc":   "finalize",
		"/authZ/abc":            "authz",
		"/chalZ/abc":            "challenge",
		"/certZ/abc":            "certificate",
		"/revoke-cert":          "revokeCert",
		"/rollover-account-key": "keyChange",
		"/draft-ietf-acme-ari-03/renewalInfo/a.b": "renewalInfo",
		"/list-orderz/1":     "orders",
		"/roots/0":           "management",
		"/set-renewal-info/": "management",
		"/":                  "other",
		"/dir/":              "other",
	}
	for path, want := range tests {
		if got := classify(path); got != want {
			t.Errorf("classify(%q) = %q, want %q", path, got, want)
		}
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// exchange sends one query to the server over network ("tcp" or "udp").
func exchange(t *testing.T, d *DNSServer, network, name string, qtype uint16) *dns.Msg {
	t.Helper()
	client := &dns.Client{Net: network, Timeout: 5 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	in, _, err := client.Exchange(m, d.Addr())
	if err != nil {
		t.Fatalf("query %s %s over %s: %v", name, dns.TypeToString[qtype], network, err)
	}
	return in
}

// rrStrings renders records without their TTL, for comparison.
func rrStrings(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		h := rr.Header()
		s := strings.TrimPrefix(rr.String(), h.String())
		out = append(out, strings.ToLower(h.Name)+" "+dns.TypeToString[h.Rrtype]+" "+s)
	}
	return out
}

func TestDNSServer(t *testing.T) {
	t.Parallel()
	d, err := NewDNSServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	if !strings.HasPrefix(d.Addr(), "127.0.0.1:") {
		t.Errorf("Addr() = %q, want 127.0.0.1:PORT", d.Addr())
	}
	d.AddZone("Example.TEST.")
	d.AddTXT("_acme-challenge.www.example.test", "token-1")
	d.AddTXT("_ACME-challenge.www.example.test.", "token-2")
	d.AddTXT("target.validation.test", "delegated")
	d.SetCNAME("_acme-challenge.alias.example.test", "target.validation.test")

	const soa = "example.test. SOA ns1.example.test. hostmaster.example.test. 1 3600 600 86400 60"
	tests := []struct {
		name       string
		qname      string
		qtype      uint16
		answer     []string
		authority  []string
		extra      []string
		authorized bool
	}{
		{name: "A anywhere", qname: "random.name.invalid", qtype: dns.TypeA,
			answer: []string{"random.name.invalid. A 127.0.0.1"}},
		{name: "AAAA empty", qname: "www.example.test", qtype: dns.TypeAAAA,
			authority: []string{soa}, authorized: true},
		{name: "TXT", qname: "_acme-challenge.WWW.example.test", qtype: dns.TypeTXT,
			answer: []string{
				`_acme-challenge.www.example.test. TXT "token-1"`,
				`_acme-challenge.www.example.test. TXT "token-2"`,
			}, authorized: true},
		{name: "TXT none in zone", qname: "nothing.example.test", qtype: dns.TypeTXT,
			authority: []string{soa}, authorized: true},
		{name: "TXT none outside zones", qname: "nothing.other.test", qtype: dns.TypeTXT},
		{name: "TXT through CNAME", qname: "_acme-challenge.alias.example.test", qtype: dns.TypeTXT,
			answer: []string{
				"_acme-challenge.alias.example.test. CNAME target.validation.test.",
				`target.validation.test. TXT "delegated"`,
			}, authorized: true},
		{name: "CNAME", qname: "_acme-challenge.alias.example.test", qtype: dns.TypeCNAME,
			answer:     []string{"_acme-challenge.alias.example.test. CNAME target.validation.test."},
			authorized: true},
		{name: "SOA at apex", qname: "example.test", qtype: dns.TypeSOA,
			answer: []string{soa}, authorized: true},
		{name: "SOA below apex", qname: "a.b.example.test", qtype: dns.TypeSOA,
			authority: []string{soa}, authorized: true},
		{name: "SOA outside zones", qname: "test", qtype: dns.TypeSOA},
		{name: "NS at apex", qname: "example.test", qtype: dns.TypeNS,
			answer:     []string{"example.test. NS ns1.example.test."},
			extra:      []string{"ns1.example.test. A 127.0.0.1"},
			authorized: true},
		{name: "NS host", qname: "ns1.example.test", qtype: dns.TypeA,
			answer: []string{"ns1.example.test. A 127.0.0.1"}, authorized: true},
	}
	for _, network := range []string{"tcp", "udp"} {
		for _, tt := range tests {
			t.Run(network+"/"+tt.name, func(t *testing.T) {
				in := exchange(t, d, network, tt.qname, tt.qtype)
				if in.Rcode != dns.RcodeSuccess {
					t.Errorf("rcode = %s, want NOERROR", dns.RcodeToString[in.Rcode])
				}
				if got := rrStrings(in.Answer); !slices.Equal(got, tt.answer) {
					t.Errorf("answer = %q, want %q", got, tt.answer)
				}
				if got := rrStrings(in.Ns); !slices.Equal(got, tt.authority) {
					t.Errorf("authority = %q, want %q", got, tt.authority)
				}
				if got := rrStrings(in.Extra); !slices.Equal(got, tt.extra) {
					t.Errorf("additional = %q, want %q", got, tt.extra)
				}
				if in.Authoritative != tt.authorized {
					t.Errorf("authoritative = %v, want %v", in.Authoritative, tt.authorized)
				}
			})
		}
	}
}

func TestDNSLongTXT(t *testing.T) {
	t.Parallel()
	d, err := NewDNSServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	long := strings.Repeat("a", 300)
	d.AddTXT("long.test", long)
	in := exchange(t, d, "tcp", "long.test", dns.TypeTXT)
	if len(in.Answer) != 1 {
		t.Fatalf("answer = %v, want one TXT", in.Answer)
	}
	if got := strings.Join(in.Answer[0].(*dns.TXT).Txt, ""); got != long {
		t.Errorf("TXT joined = %d octets, want %d", len(got), len(long))
	}
}

func TestDNSTXTAddDelete(t *testing.T) {
	t.Parallel()
	d, err := NewDNSServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })

	const name = "_acme-challenge.example.test"
	d.AddTXT(name, "a")
	d.AddTXT(strings.ToUpper(name)+".", "b")
	d.AddTXT(name, "a")
	if got, want := d.TXT(name+"."), []string{"a", "b", "a"}; !slices.Equal(got, want) {
		t.Fatalf("TXT = %q, want %q", got, want)
	}
	steps := []struct {
		value string
		ok    bool
		after []string
	}{
		{"A", false, []string{"a", "b", "a"}},  // exact match: case matters in values
		{"a ", false, []string{"a", "b", "a"}}, // and so does whitespace
		{"a", true, []string{"b", "a"}},        // one copy only
		{"b", true, []string{"a"}},
		{"b", false, []string{"a"}},
		{"a", true, nil},
		{"a", false, nil},
	}
	for i, s := range steps {
		if ok := d.DeleteTXT(name, s.value); ok != s.ok {
			t.Errorf("step %d: DeleteTXT(%q) = %v, want %v", i, s.value, ok, s.ok)
		}
		if got := d.TXT(name); !slices.Equal(got, s.after) {
			t.Errorf("step %d: TXT = %q, want %q", i, got, s.after)
		}
	}
	// The returned slice is a copy.
	d.AddTXT(name, "x")
	d.TXT(name)[0] = "changed"
	if got := d.TXT(name); got[0] != "x" {
		t.Errorf("TXT()[0] = %q after modifying a returned slice, want %q", got[0], "x")
	}
	if in := exchange(t, d, "tcp", name, dns.TypeTXT); len(in.Answer) != 1 {
		t.Errorf("served TXT = %v, want one record", in.Answer)
	}
}

func TestDNSConcurrent(t *testing.T) {
	t.Parallel()
	d, err := NewDNSServer()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			name := strings.Repeat("x", i+1) + ".test"
			for range 20 {
				d.AddTXT(name, "v")
				m := new(dns.Msg)
				m.SetQuestion(name+".", dns.TypeTXT)
				in, _, err := (&dns.Client{Net: "tcp", Timeout: 5 * time.Second}).Exchange(m, d.Addr())
				if err != nil {
					t.Errorf("query %s: %v", name, err)
					return
				}
				if len(in.Answer) != 1 {
					t.Errorf("query %s: answer %v, want one TXT", name, in.Answer)
				}
				if !d.DeleteTXT(name, "v") {
					t.Errorf("DeleteTXT(%s) = false", name)
				}
			}
		})
	}
	wg.Wait()
}

func lookupEnv(k string) (string, bool) { return os.LookupEnv(k) }
