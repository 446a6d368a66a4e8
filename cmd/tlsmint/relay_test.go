package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/audit"
	"github.com/tlsmint/tlsmint/internal/testenv"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/relay"
	"github.com/tlsmint/tlsmint/solvers"
	"github.com/tlsmint/tlsmint/statuspage"
	"github.com/tlsmint/tlsmint/storage"
	"github.com/tlsmint/tlsmint/storage/postgres"
)

// runningRelay is `tlsmint relay` started through run.
type runningRelay struct {
	stderr *testsetup.Buffer
	stop   context.CancelFunc
	done   chan int
	admin  string // http://host:port
}

const relayName = "acme.relay.example"

// startRelay runs `tlsmint relay --config cfg` with env until the test
// ends (or stop), and waits until its listeners are up.
func startRelay(t *testing.T, cfg string, env map[string]string) *runningRelay {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningRelay{stderr: &testsetup.Buffer{}, stop: cancel, done: make(chan int, 1)}
	go func() {
		r.done <- runEnv(ctx, []string{"relay", "--config", cfg}, strings.NewReader(""), io.Discard, r.stderr, func(k string) string { return env[k] })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(time.Minute):
			t.Error("the relay did not stop within a minute")
		}
		t.Logf("relay stderr:\n%s", r.stderr.String())
	})
	re := regexp.MustCompile(`admin API, /status and /metrics on (https?://\S+)`)
	deadline := time.Now().Add(time.Minute)
	for {
		if m := re.FindStringSubmatch(r.stderr.String()); m != nil {
			r.admin = m[1]
			return r
		}
		select {
		case code := <-r.done:
			r.done <- code
			t.Fatalf("the relay exited with %d before listening:\n%s", code, r.stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("the relay did not listen within a minute:\n%s", r.stderr.String())
		}
	}
}

// relayEnv is a configuration for a relay in front of the test CA: its
// ACME API on the CA's tls-alpn-01 port (so that it obtains its own
// certificate with autotls), its upstream http-01 on the CA's http-01
// port, and its validator asking the CA's mock DNS and connecting for
// http-01 to the downstream solver's port.
type relayEnv struct {
	ca       *testCA
	dir      string
	cfgFile  string
	storeDir string
	token    string
	env      map[string]string
	down     *solvers.HTTP01
	downPort int
}

func newRelayEnv(t *testing.T, modify func(map[string]any)) *relayEnv {
	t.Helper()
	ca := newCA(t, testpebble.Options{})
	e := &relayEnv{ca: ca, dir: t.TempDir(), down: &solvers.HTTP01{}, token: "relay-admin-token-" + strconv.Itoa(os.Getpid())}
	e.storeDir = filepath.Join(e.dir, "store")
	e.env = map[string]string{"RELAY_ADMIN_TOKEN": e.token, "TLSMINT_RELAY_ADMIN_TOKEN": e.token}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: e.down, ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	e.downPort = ln.Addr().(*net.TCPAddr).Port
	cfg := map[string]any{
		"storage": "store", // relative to the file's folder
		"listen":  net.JoinHostPort("127.0.0.1", strconv.Itoa(ca.TLSPort())),
		"node":    "relay-test",
		"tls": map[string]any{
			"names": []string{relayName}, "ca": ca.DirectoryURL(), "ca_roots": ca.rootsFile, "accept_tos": true,
		},
		"admin":         map[string]any{"listen": "127.0.0.1:0", "token_env": "RELAY_ADMIN_TOKEN"},
		"http01_listen": net.JoinHostPort("127.0.0.1", strconv.Itoa(ca.HTTPPort())),
		"upstreams": []any{map[string]any{
			"name": "pebble", "directory": ca.DirectoryURL(), "ca_roots": ca.rootsFile, "accept_tos": true, "email": "relay@example.com",
		}},
		"validator":        map[string]any{"http_port": e.downPort, "resolver": ca.DNS().Addr(), "timeout": "10s"},
		"shutdown_timeout": "5s",
		"routes":           []any{map[string]any{"names": []string{"example.com"}, "upstreams": []string{"pebble"}}},
	}
	if modify != nil {
		modify(cfg)
	}
	e.cfgFile = filepath.Join(e.dir, "relay.json")
	writeJSON(t, e.cfgFile, cfg)
	return e
}

func writeJSON(t testing.TB, path string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// client returns a downstream ACME client of the relay, dialing addr
// whatever the URL's host, trusting the test CA's roots.
func (e *relayEnv) client(t testing.TB) *acme.Client {
	t.Helper()
	key := testsetup.Key(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(e.ca.TLSPort()))
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: e.ca.RootPool(), ServerName: relayName},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return new(net.Dialer).DialContext(ctx, network, addr)
		},
	}}
	return &acme.Client{DirectoryURL: fmt.Sprintf("https://%s:%d/directory", relayName, e.ca.TLSPort()), Key: key, HTTPClient: hc, PollInterval: 10 * time.Millisecond}
}

// get fetches url from the admin listener with the headers given.
func get(t testing.TB, url string, hdr ...string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestRelayCommand runs `tlsmint relay` end to end: it obtains its own
// certificate from the test CA with autotls, a tenant and an EAB key are
// made with `relay tenant add` and `relay eab mint` (through the admin
// API and directly in the storage), tlsmint's ACME client registers with
// the key and obtains a certificate through it (validated by the relay,
// then upstream by the CA), its metrics and status page show what
// passed, and SIGINT (the context) stops it cleanly with the audit trail
// written.
func TestRelayCommand(t *testing.T) {
	e := newRelayEnv(t, nil)
	r := startRelay(t, e.cfgFile, e.env)

	// A tenant and an EAB key through the admin API.
	runCmd(t, e.env, "relay", "tenant", "add", "team", "--admin", r.admin, "--name", "example.com", "--ip", "127.0.0.1", "--validation-target", "127.0.0.0/8").ok(t)
	runCmd(t, e.env, "relay", "tenant", "add", "team", "--admin", r.admin, "--name", "example.org").fails(t, exitUsage, "tenant team exists", "--replace")
	var mint struct {
		KeyID   string `json:"key_id"`
		HMACKey string `json:"hmac_key"`
	}
	runCmd(t, e.env, "relay", "eab", "mint", "team", "--admin", r.admin, "--json").ok(t).decode(t, &mint)
	if mint.KeyID == "" || mint.HMACKey == "" {
		t.Fatalf("eab mint printed %+v, want a key ID and a MAC key", mint)
	}
	// The wrong token is refused, and says what to check.
	runCmd(t, map[string]string{"TLSMINT_RELAY_ADMIN_TOKEN": "wrong-token-0123456789"}, "relay", "eab", "mint", "team", "--admin", r.admin).fails(t, exitFailure, "refused the token")

	// A second tenant directly in the storage, while the relay runs.
	runCmd(t, nil, "relay", "tenant", "add", "other", "--config", e.cfgFile, "--name", "other.example", "--rate-limit", "10/1h", "--account-rate-limit", "none").ok(t)
	var ts []relay.Tenant
	runCmd(t, e.env, "relay", "tenant", "list", "--admin", r.admin, "--json").ok(t).decode(t, &ts)
	if len(ts) != 2 || ts[0].ID != "other" || ts[1].ID != "team" || ts[0].Policy.RateLimit.Orders != 10 || ts[0].Policy.AccountRateLimit.Orders != -1 || ts[1].Policy.IPRanges[0].String() != "127.0.0.1/32" ||
		len(ts[1].Policy.ValidationTargets) != 1 || ts[1].Policy.ValidationTargets[0].String() != "127.0.0.0/8" || len(ts[0].Policy.ValidationTargets) != 0 {
		t.Fatalf("tenant list = %+v, want other (10/1h) and team (127.0.0.1/32, validation targets 127.0.0.0/8)", ts)
	}
	if out := runCmd(t, e.env, "relay", "tenant", "list", "--admin", r.admin).ok(t).stdout; !strings.Contains(out, "VALIDATION TARGETS") || !strings.Contains(out, "127.0.0.0/8") {
		t.Errorf("tenant list does not show the validation targets:\n%s", out)
	}

	// tlsmint's ACME client registers with the EAB key and obtains a
	// certificate through the relay.
	ctx := ctxT(t)
	c := e.client(t)
	mac, err := acme.DecodeEABKey(mint.HMACKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Register(ctx, acme.Account{TermsOfServiceAgreed: true, ExternalAccountBinding: &acme.ExternalAccountBinding{KeyID: mint.KeyID, HMACKey: mac}}); err != nil {
		t.Fatalf("Register through the relay: %v", err)
	}
	certKey := testsetup.Key(t)
	cert, err := c.Obtain(ctx, acme.ObtainRequest{
		Identifiers: acme.DNSNames("www.example.com"), CertKey: certKey,
		Solvers: map[string]acme.Solver{acme.ChallengeHTTP01: e.down},
	})
	if err != nil {
		t.Fatalf("Obtain through the relay: %v", err)
	}
	inter := x509.NewCertPool()
	for _, ic := range cert.Chains[0].Certificates[1:] {
		inter.AddCert(ic)
	}
	if _, err := cert.Leaf().Verify(x509.VerifyOptions{DNSName: "www.example.com", Roots: e.ca.RootPool(), Intermediates: inter}); err != nil {
		t.Fatalf("the certificate from the relay does not verify against the test CA: %v", err)
	}
	// A name outside the tenant's policy is refused before anything goes
	// upstream.
	_, err = c.Obtain(ctx, acme.ObtainRequest{Identifiers: acme.DNSNames("www.other.example"), CertKey: certKey, Solvers: map[string]acme.Solver{acme.ChallengeHTTP01: e.down}})
	if !errors.Is(err, acme.ErrRejectedIdentifier) {
		t.Fatalf("order outside the policy: got %v, want rejectedIdentifier", err)
	}

	// Metrics: loopback clients may scrape.
	code, body := get(t, r.admin+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", code, body)
	}
	for _, want := range []string{
		`tlsmint_decisions_total{operation="relay.issue",outcome="ok",problem=""} 1`,
		`tlsmint_decisions_total{operation="relay.newOrder",outcome="refused",problem="rejectedIdentifier"} 1`,
		`tlsmint_relay_certificates_issued_total{tenant="team"} 1`,
		`tlsmint_acme_requests_total{issuer="` + e.ca.DirectoryURL() + `",operation="newOrder",problem="",status="201"}`,
		`tlsmint_certificate_ready{issuer="` + e.ca.DirectoryURL() + `",name="` + relayName + `"} 1`,
		"go_goroutines ",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("the metrics lack %s", want)
		}
	}

	// The status page's JSON: the relay's own certificate and the trail.
	code, body = get(t, r.admin+"/status?format=json")
	if code != http.StatusOK {
		t.Fatalf("GET /status: %d %s", code, body)
	}
	var st statuspage.Status
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatalf("status JSON: %v\n%s", err, body)
	}
	if i := slices.IndexFunc(st.Certificates, func(c statuspage.Certificate) bool { return c.Name == relayName }); i < 0 || st.Certificates[i].State != statuspage.StateOK {
		t.Errorf("status certificates = %+v, want %s ok", st.Certificates, relayName)
	}
	// and the certificate issued through it, with its tenant and expiry.
	if i := slices.IndexFunc(st.Certificates, func(c statuspage.Certificate) bool { return c.Name == "www.example.com" }); i < 0 ||
		st.Certificates[i].Tenant != "team" || !st.Certificates[i].NotAfter.Equal(cert.Leaf().NotAfter) ||
		st.Certificates[i].Issuer != e.ca.DirectoryURL() || st.Certificates[i].State != statuspage.StateOK || st.Certificates[i].Revoked {
		t.Errorf("status certificates = %+v, want www.example.com of tenant team, ok, expiring %v", st.Certificates, cert.Leaf().NotAfter)
	}
	if !slices.ContainsFunc(st.Activity, func(r record.Audit) bool {
		return r.Operation == relay.OperationPrefix+"issue" && r.Outcome == record.OutcomeOK && slices.Contains(r.Names, "www.example.com")
	}) {
		t.Errorf("status activity has no relay.issue record for www.example.com: %+v", st.Activity)
	}
	// The page itself renders.
	if code, body := get(t, r.admin+"/status"); code != http.StatusOK || !strings.Contains(string(body), "tlsmint relay") || !strings.Contains(string(body), `data-name="www.example.com"`) || !strings.Contains(string(body), "tenant team") {
		t.Errorf("GET /status (HTML): %d %.300s", code, body)
	}

	// The admin API needs the token; the status page and metrics take it
	// too.
	if code, _ := get(t, r.admin+"/tenants"); code != http.StatusUnauthorized {
		t.Errorf("GET /tenants without the token: %d, want 401", code)
	}
	if code, _ := get(t, r.admin+"/metrics", "Authorization", "Bearer "+e.token); code != http.StatusOK {
		t.Errorf("GET /metrics with the token: %d, want 200", code)
	}

	// Stop (SIGINT): exit 0, the listeners closed, the trail written.
	r.stop()
	select {
	case code := <-r.done:
		r.done <- code
		if code != 0 {
			t.Fatalf("the relay exited with %d, want 0:\n%s", code, r.stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("the relay did not stop within a minute")
	}
	if !strings.Contains(r.stderr.String(), "tlsmint relay: stopped") {
		t.Errorf("stderr does not say the relay stopped:\n%s", r.stderr.String())
	}
	if conn, err := net.DialTimeout("tcp", strings.TrimPrefix(r.admin, "http://"), time.Second); err == nil {
		conn.Close()
		t.Error("the admin listener still accepts connections after the stop")
	}
	store := storage.Dir(e.storeDir)
	defer store.Close()
	trail := &audit.Log{Storage: store, Retention: -1}
	defer trail.Close()
	recs, err := trail.Query(ctxT(t), record.AuditFilter{Operation: relay.OperationPrefix + "issue"})
	if err != nil || len(recs) != 1 || recs[0].Node != "relay-test" {
		t.Fatalf("audit trail after the stop: %v, %+v; want one relay.issue record of node relay-test", err, recs)
	}
	for _, op := range []string{"admin.putTenant", "admin.newEABKey"} {
		recs, err := trail.Query(ctxT(t), record.AuditFilter{Operation: relay.OperationPrefix + op})
		if err != nil || len(recs) < 1 {
			t.Errorf("audit trail has no %s record: %v", op, err)
		}
	}
}

// TestRelayCommandReplicasPostgres runs two `tlsmint relay` replicas on
// one PostgreSQL storage with shared nonces, behind a balancer that sends
// every connection to the other replica: a client registers and obtains
// a certificate through both with no badNonce, and the upstream http-01
// token presented by one replica is answered by the other (only one
// listens on the CA's http-01 port).
func TestRelayCommandReplicasPostgres(t *testing.T) {
	dsn := testenv.Postgres(t)
	clean := func() {
		s, err := postgres.New(context.Background(), postgres.Config{DSN: dsn})
		if err != nil {
			t.Fatalf("postgres.New: %v", err)
		}
		defer s.Close()
		keys, _ := s.List(context.Background(), "relay/")
		for _, k := range keys {
			s.Delete(context.Background(), k)
		}
	}
	clean()
	t.Cleanup(clean)

	ca := newCA(t, testpebble.Options{})
	dir := t.TempDir()
	cert := writeRelayCert(t, dir, relayName)
	down := &solvers.HTTP01{}
	dl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: down, ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(dl)
	t.Cleanup(func() { hs.Close() })

	env := map[string]string{"TOKEN": "replica-admin-token-0123456789"}
	var relays [2]*runningRelay
	var addrs [2]string
	for i, http01 := range []string{net.JoinHostPort("127.0.0.1", strconv.Itoa(ca.HTTPPort())), "127.0.0.1:0"} {
		cfg := map[string]any{
			"storage": dsn, "listen": "127.0.0.1:0", "base_url": "https://" + relayName, "node": fmt.Sprintf("replica-%d", i+1),
			"tls":           map[string]any{"cert_file": "relay.crt", "key_file": "relay.key"},
			"admin":         map[string]any{"listen": "127.0.0.1:0", "token_env": "TOKEN"},
			"http01_listen": http01,
			"upstreams":     []any{map[string]any{"name": "pebble", "directory": ca.DirectoryURL(), "ca_roots": ca.rootsFile, "accept_tos": true}},
			"validator":     map[string]any{"http_port": dl.Addr().(*net.TCPAddr).Port, "resolver": ca.DNS().Addr()},
			"shared_nonces": true,
		}
		file := filepath.Join(dir, fmt.Sprintf("relay-%d.json", i+1))
		writeJSON(t, file, cfg)
		relays[i] = startRelay(t, file, env)
		m := regexp.MustCompile(`listening on (\S+)`).FindStringSubmatch(relays[i].stderr.String())
		if m == nil {
			t.Fatalf("no listening line:\n%s", relays[i].stderr.String())
		}
		addrs[i] = m[1]
	}
	runCmd(t, nil, "relay", "tenant", "add", "team", "--config", filepath.Join(dir, "relay-2.json"), "--name", "example.com", "--validation-target", "127.0.0.0/8").ok(t)
	var mint struct {
		KeyID   string `json:"key_id"`
		HMACKey string `json:"hmac_key"`
	}
	runCmd(t, nil, "relay", "eab", "mint", "team", "--config", filepath.Join(dir, "relay-1.json"), "--json").ok(t).decode(t, &mint)
	mac, _ := acme.DecodeEABKey(mint.HMACKey)

	roots := x509.NewCertPool()
	leaf, _ := x509.ParseCertificate(cert.Certificate[0])
	roots.AddCert(leaf)
	var conns atomic.Int32
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: relayName},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return new(net.Dialer).DialContext(ctx, network, addrs[conns.Add(1)%2])
		},
		DisableKeepAlives: true,
	}}
	key := testsetup.Key(t)
	c := &acme.Client{DirectoryURL: "https://" + relayName + "/directory", Key: key, HTTPClient: hc, PollInterval: 10 * time.Millisecond}
	ctx := ctxT(t)
	if _, err := c.Register(ctx, acme.Account{TermsOfServiceAgreed: true, ExternalAccountBinding: &acme.ExternalAccountBinding{KeyID: mint.KeyID, HMACKey: mac}}); err != nil {
		t.Fatalf("Register across the replicas: %v", err)
	}
	certKey := testsetup.Key(t)
	if _, err := c.Obtain(ctx, acme.ObtainRequest{Identifiers: acme.DNSNames("replicas.example.com"), CertKey: certKey, Solvers: map[string]acme.Solver{acme.ChallengeHTTP01: down}}); err != nil {
		t.Fatalf("Obtain across the replicas: %v", err)
	}
	if conns.Load() < 8 {
		t.Fatalf("%d connections: the balancer did not alternate", conns.Load())
	}
	for i, r := range relays {
		_, body := get(t, r.admin+"/metrics")
		if strings.Contains(string(body), `problem="badNonce"`) {
			t.Errorf("replica %d refused a nonce with shared nonces:\n%s", i+1, grepLines(string(body), "tlsmint_decisions_total"))
		}
		if !strings.Contains(string(body), `tlsmint_decisions_total{operation="relay.`) {
			t.Errorf("replica %d decided nothing: the balancer did not reach it", i+1)
		}
	}
}

// grepLines returns the lines of s that contain w.
func grepLines(s, w string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, w) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// writeRelayCert writes a self-signed certificate for name, valid for the
// hour around now, to dir/relay.crt and its key to dir/relay.key, and
// returns it.
func writeRelayCert(t *testing.T, dir, name string) tls.Certificate {
	t.Helper()
	cert := selfSigned(t, name, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	der, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if os.WriteFile(filepath.Join(dir, "relay.crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644) != nil ||
		os.WriteFile(filepath.Join(dir, "relay.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600) != nil {
		t.Fatal("writing the relay's certificate")
	}
	return cert
}

// mintEAB mints an EAB key with `tlsmint relay eab mint ARGS... --json` and
// returns it, its MAC key decoded.
func mintEAB(t *testing.T, env map[string]string, args ...string) *acme.ExternalAccountBinding {
	t.Helper()
	var mint struct {
		KeyID   string `json:"key_id"`
		HMACKey string `json:"hmac_key"`
	}
	runCmd(t, env, append(append([]string{"relay", "eab", "mint"}, args...), "--json")...).ok(t).decode(t, &mint)
	mac, err := acme.DecodeEABKey(mint.HMACKey)
	if err != nil || mint.KeyID == "" {
		t.Fatalf("eab mint printed key ID %q and a MAC key that does not decode (%v)", mint.KeyID, err)
	}
	return &acme.ExternalAccountBinding{KeyID: mint.KeyID, HMACKey: mac}
}
