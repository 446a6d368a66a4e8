package main

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/tlsmint/tlsmint/internal/testpebble"
)

// The files dev-ca writes into its folder.
const (
	devEnvFile     = "env"          // the environment the other commands read
	devCARootsFile = "ca-https.pem" // trusts the CA's HTTPS server (--ca-roots)
	devIssuersFile = "roots.pem"    // the roots issued certificates chain to (check --trust)
	devRelayFile   = "relay.json"   // a relay configuration against the CA
	devTokenFile   = "admin-token"  // the relay's admin token
	devRelayName   = "relay.test"   // the relay's own name
)

func (a *app) devCACommand() *cobra.Command {
	var dir string
	var httpPort, tlsPort int
	cmd := &cobra.Command{
		Use:   "dev-ca",
		Short: "Run a local test CA and its DNS on loopback, to try tlsmint without a real CA",
		Long: `dev-ca runs Let's Encrypt's test CA (Pebble, in-process, as the tests use it)
and a DNS server that answers 127.0.0.1 for every name, on loopback, until
SIGINT or SIGTERM. Nothing is downloaded and nothing leaves the machine: the CA
validates http-01 and tls-alpn-01 for real, on 127.0.0.1 at the ports it
prints, for any name (example.test, app.test, …).

It writes into --dir: env (the TLSMINT_* variables the other commands read:
--ca, --ca-roots, an account key and a storage in the folder, --http on the
CA's http-01 port), ca-https.pem, roots.pem (what issued
certificates chain to, for check --trust), and relay.json with admin-token (a
relay in front of the CA, its own certificate for relay.test obtained from it).
Everything it issues is for testing only and is gone when it stops.`,
		Example: `  tlsmint dev-ca --dir ./dev &
  . ./dev/env && tlsmint account register --accept-tos && tlsmint obtain app.test && tlsmint certs list`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.devCA(cmd, dir, httpPort, tlsPort)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", filepath.Join(os.TempDir(), "tlsmint-dev-ca"), "folder for the files the other commands read (created with mode 0700)")
	f.IntVar(&httpPort, "http-port", 0, "the port the CA validates http-01 on, at 127.0.0.1 (default a free one)")
	f.IntVar(&tlsPort, "tls-port", 0, "the port the CA validates tls-alpn-01 on, at 127.0.0.1 (default a free one)")
	return cmd
}

func (a *app) devCA(cmd *cobra.Command, dir string, httpPort, tlsPort int) error {
	ctx := cmd.Context()
	for _, p := range []struct {
		flag string
		v    int
	}{{"--http-port", httpPort}, {"--tls-port", tlsPort}} {
		if p.v < 0 || p.v > 65535 {
			return usagef("%s %d: want a port number", p.flag, p.v)
		}
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	dir = abs
	if err := os.MkdirAll(filepath.Join(dir, "storage"), 0o700); err != nil {
		return fmt.Errorf("creating --dir: %w", err)
	}
	ca, err := testpebble.New(testpebble.Options{HTTPPort: httpPort, TLSPort: tlsPort})
	if err != nil {
		return fmt.Errorf("starting the test CA: %w", err)
	}
	defer ca.Close()

	// The CA's HTTPS certificate, as a client sees it, for --ca-roots.
	u, _ := url.Parse(ca.DirectoryURL())
	conn, err := tls.Dial("tcp", u.Host, &tls.Config{RootCAs: ca.TLSRoots()})
	if err != nil {
		return fmt.Errorf("reading the test CA's HTTPS certificate: %w", err)
	}
	var caPEM []byte
	for _, c := range conn.ConnectionState().PeerCertificates {
		caPEM = append(caPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	conn.Close()
	var issuers []byte
	for _, c := range ca.Roots() {
		issuers = append(issuers, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	token := make([]byte, 16)
	rand.Read(token)
	httpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ca.HTTPPort()))
	tlsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(ca.TLSPort()))
	path := func(name string) string { return filepath.Join(dir, name) }
	relay, err := json.MarshalIndent(map[string]any{
		"storage": "relay-storage",
		"listen":  tlsAddr, // its own certificate by tls-alpn-01 on this listener
		"tls": map[string]any{
			"names": []string{devRelayName}, "ca": ca.DirectoryURL(), "ca_roots": devCARootsFile, "accept_tos": true,
		},
		"admin":         map[string]any{"listen": "127.0.0.1:0", "token_file": devTokenFile},
		"http01_listen": httpAddr,
		"upstreams": []any{map[string]any{
			"name": "dev-ca", "directory": ca.DirectoryURL(), "ca_roots": devCARootsFile, "accept_tos": true,
		}},
		"validator": map[string]any{"resolver": ca.DNS().Addr()},
	}, "", "  ")
	if err != nil {
		return err
	}
	env := strings.Join([]string{
		"# tlsmint dev-ca: the test CA on loopback, until it stops (. this file)",
		"export TLSMINT_CA=" + ca.DirectoryURL(),
		"export TLSMINT_CA_ROOTS=" + shellQuote(path(devCARootsFile)),
		"export TLSMINT_ACCOUNT_KEY=" + shellQuote(path("account.key")),
		"export TLSMINT_STORAGE=" + shellQuote(path("storage")),
		"export TLSMINT_HTTP=" + httpAddr,
		"export TLSMINT_DEV_ROOTS=" + shellQuote(path(devIssuersFile)) + "   # check --trust \"$TLSMINT_DEV_ROOTS\"",
		"export TLSMINT_DEV_RELAY=" + tlsAddr + "   # tlsmint relay --config " + shellQuote(path(devRelayFile)) + "; tlsmint check \"$TLSMINT_DEV_RELAY\" --sni " + devRelayName,
		"",
	}, "\n")
	for _, f := range []fileSpec{
		{path(devCARootsFile), caPEM, 0o644},
		{path(devIssuersFile), issuers, 0o644},
		{path(devTokenFile), []byte(hex.EncodeToString(token) + "\n"), 0o600},
		{path(devRelayFile), append(relay, '\n'), 0o600},
		{path(devEnvFile), []byte(env), 0o600},
	} {
		if err := writeFiles(f); err != nil {
			return err
		}
	}
	fmt.Fprintf(a.stdout, `tlsmint dev-ca: a test CA on loopback (nothing leaves the machine; certificates are for testing only)
  --ca %s
  --ca-roots %s
  validation: http-01 on %s, tls-alpn-01 on %s (the relay's listener; every name resolves to 127.0.0.1)
  issued certificates chain to %s
In another shell:
  . %s
  tlsmint account register --accept-tos && tlsmint obtain app.test && tlsmint certs list
  tlsmint relay --config %s &   # then: tlsmint check "$TLSMINT_DEV_RELAY" --sni %s --trust "$TLSMINT_DEV_ROOTS"
Stop with Ctrl-C.
`, ca.DirectoryURL(), path(devCARootsFile), httpAddr, tlsAddr, path(devIssuersFile), shellQuote(path(devEnvFile)), shellQuote(path(devRelayFile)), devRelayName)
	<-ctx.Done()
	fmt.Fprintln(a.stderr, "tlsmint dev-ca: stopped")
	return nil
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-+:=@,", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
