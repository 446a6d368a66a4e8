package main

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/tlsmint/tlsmint/internal/durfmt"
	"github.com/tlsmint/tlsmint/revocation"
	"github.com/tlsmint/tlsmint/watchdog"
)

// checkOutput is what check prints.
type checkOutput struct {
	Target     string    `json:"target"`
	ServerName string    `json:"server_name,omitempty"`
	OK         bool      `json:"ok"`
	Names      []string  `json:"names,omitempty"`
	Serial     string    `json:"serial,omitempty"`
	NotBefore  time.Time `json:"not_before,omitzero"`
	NotAfter   time.Time `json:"not_after,omitzero"`
	DaysLeft   int       `json:"days_left"`
	Left       string    `json:"left,omitempty"` // the time left as people write it: 13d 23h, or -2d 5h once expired
	Issuer     string    `json:"issuer,omitempty"`
	Chain      []string  `json:"chain,omitempty"`
	LatencyMS  int64     `json:"latency_ms"`
	Revoked    bool      `json:"revoked"`
	// Revocation says what the CRLs the certificate names said: "not
	// revoked (CRL URL)", "revoked at … (CRL URL)", "unknown: why", or
	// empty when it names none.
	Revocation string   `json:"revocation,omitempty"`
	Problems   []string `json:"problems"`
}

func (a *app) checkCommand() *cobra.Command {
	var sni, warn, trust string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "check HOST[:PORT]",
		Short: "Check what a TLS server serves: expiry, revocation, names, chain",
		Long: `check connects to HOST:PORT (443 by default), runs one TLS handshake with the
server name (--sni, else HOST) and checks the served certificate: that it
covers the name, that its chain verifies (against the system's roots, or
--trust), that it does not expire within --warn, and that the certificate
revocation lists it names (CRLDistributionPoints, as Let's Encrypt's
certificates do), signed by its issuer, do not list it. Nothing but the
handshake is sent to the server; each CRL is fetched over HTTP.

With --ca given (or TLSMINT_CA), the CA's renewal information (ARI) for the
certificate is asked too: a window the CA moved into the past is a problem.

It exits 0 when all is well and 3 when anything is wrong — revoked, expiring
within --warn, expired, not for the name, a chain that does not verify, a server that
cannot be reached — so it fits a cron job or a monitoring check.`,
		Example: `  tlsmint check example.com
  tlsmint check example.com:8443 --warn 30d
  tlsmint check 192.0.2.10:443 --sni www.example.com --json
  tlsmint check ca.internal:443 --trust internal-root.pem`,
		Args: func(_ *cobra.Command, args []string) error {
			switch len(args) {
			case 0:
				return usagef("check needs the server to check: HOST or HOST:PORT (port 443 by default), such as tlsmint check example.com")
			case 1:
				return nil
			}
			return usagef("check takes one server, HOST or HOST:PORT; got %d arguments", len(args))
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			addr := args[0]
			if _, _, err := net.SplitHostPort(addr); err != nil {
				addr = net.JoinHostPort(strings.Trim(addr, "[]"), "443")
			}
			threshold, err := parseDays(warn)
			if err != nil {
				return usagef("--warn: %v", err)
			}
			w := &watchdog.Watchdog{ExpiryThreshold: threshold, ExpiryFraction: -1, Timeout: timeout}
			if threshold == 0 {
				w.ExpiryThreshold = -1 // only expired certificates
			}
			if trust != "" {
				b, err := readSmallFile(trust)
				if err != nil {
					return fmt.Errorf("reading --trust: %w", err)
				}
				pool := x509.NewCertPool()
				if !pool.AppendCertsFromPEM(b) {
					return usagef("--trust %s: no PEM certificate in it", trust)
				}
				w.Roots = pool
			}
			res, err := w.Check(cmd.Context(), watchdog.Target{Addr: addr, ServerName: sni})
			if err != nil {
				return err
			}
			out := checkOutput{Target: addr, ServerName: res.Target.ServerName, OK: res.OK(), LatencyMS: res.Latency.Milliseconds(), Problems: []string{}}
			if out.ServerName == "" {
				out.ServerName, _, _ = net.SplitHostPort(addr)
			}
			if leaf := res.Leaf(); leaf != nil {
				out.Names = leafNames(leaf)
				out.Serial = res.Serial()
				out.NotBefore, out.NotAfter = leaf.NotBefore, leaf.NotAfter
				out.DaysLeft = daysLeft(leaf.NotAfter, res.Time)
				out.Left = durfmt.Format(leaf.NotAfter.Sub(res.Time))
				out.Issuer = leaf.Issuer.CommonName
				for _, c := range res.Chain {
					out.Chain = append(out.Chain, certLabel(c))
				}
				rv := res.Revocation
				switch {
				case rv.Revoked:
					out.Revoked = true
					out.Revocation = "revoked at " + fmtTime(rv.RevokedAt) + ", reason " + revocation.ReasonText(rv.Reason) + " (CRL " + rv.CRL + ")"
				case res.RevocationErr != nil:
					out.Revocation = "unknown: " + res.RevocationErr.Error()
				case rv.Checked:
					out.Revocation = "not revoked (CRL " + rv.CRL + ")"
				}
			}
			for _, p := range res.Problems {
				out.Problems = append(out.Problems, p.Error())
			}
			// With --ca given, the CA's renewal information too: a window
			// it moved into the past is what it does before revoking.
			if leaf := res.Leaf(); leaf != nil && flagSet(cmd, "ca") && res.Time.Before(leaf.NotAfter) {
				if p := a.ariProblem(cmd, leaf, res.Time); p != "" {
					out.Problems = append(out.Problems, p)
					out.OK = false
				}
			}
			if a.jsonOut {
				if err := a.printJSON(out); err != nil {
					return err
				}
			} else {
				var b bytes.Buffer
				t := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
				verdict := "OK"
				if !out.OK {
					verdict = "PROBLEM"
				}
				fmt.Fprintf(t, "%s:\t%s (%s)\n", verdict, termSafe(out.Target), termSafe(out.ServerName))
				if out.Serial != "" {
					fmt.Fprintf(t, "names:\t%s\n", termSafe(strings.Join(out.Names, ", ")))
					fmt.Fprintf(t, "expires:\t%s (%s)\n", fmtTime(out.NotAfter), leftText(out.NotAfter.Sub(res.Time)))
					fmt.Fprintf(t, "issuer:\t%s\n", termSafe(out.Issuer))
					fmt.Fprintf(t, "chain:\t%s\n", termSafe(strings.Join(out.Chain, " <- ")))
					fmt.Fprintf(t, "serial:\t%s\n", out.Serial)
					if out.Revocation != "" {
						fmt.Fprintf(t, "revocation:\t%s\n", termSafe(out.Revocation))
					}
				}
				for _, p := range out.Problems {
					fmt.Fprintf(t, "problem:\t%s\n", termSafe(p))
				}
				if err := t.Flush(); err != nil {
					return err
				}
				text := b.String()
				if a.colorOn() {
					text = paint(verdictColor(out.OK), verdict) + strings.TrimPrefix(text, verdict)
				}
				if _, err := io.WriteString(a.stdout, text); err != nil {
					return err
				}
			}
			if !out.OK {
				return errProblem
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&sni, "sni", "", "server name to send and check (default HOST)")
	f.StringVar(&warn, "warn", "14d", "a problem when the certificate expires within this: 14d, 36h, 90d 3h, … (0: only when expired)")
	f.StringVar(&trust, "trust", "", "PEM file of roots to verify the chain against (default the system's)")
	f.DurationVar(&timeout, "timeout", 10*time.Second, "bound on the connection and handshake")
	return cmd
}

// leftText says how long is left until an expiry: "in 13d 23h", or
// "expired 2d 5h ago".
func leftText(d time.Duration) string {
	if d < 0 {
		return "expired " + durfmt.Format(-d) + " ago"
	}
	return "in " + durfmt.Format(d)
}

// certLabel names a certificate for people: its common name, else (as in
// Let's Encrypt's profiles without one) its first name, else its serial.
func certLabel(c *x509.Certificate) string {
	switch {
	case c.Subject.CommonName != "":
		return c.Subject.CommonName
	case len(c.DNSNames) > 0:
		return c.DNSNames[0]
	case len(c.IPAddresses) > 0:
		return c.IPAddresses[0].String()
	}
	return "serial " + fmt.Sprintf("%x", c.SerialNumber)
}

// ariProblem asks --ca for leaf's renewal information and returns the
// problem when the CA moved its window into the past (it asks for the
// certificate to be replaced at once, as before a revocation); "" when
// the window lies ahead or the CA has none for leaf.
func (a *app) ariProblem(cmd *cobra.Command, leaf *x509.Certificate, now time.Time) string {
	c, err := a.client(nil)
	if err != nil {
		return ""
	}
	ri, err := c.RenewalInfo(cmd.Context(), leaf)
	if err != nil || ri.SuggestedWindow.End.IsZero() || !ri.SuggestedWindow.End.Before(now) {
		return ""
	}
	p := "renewal requested by the CA: its renewal window (ARI) ended " + fmtTime(ri.SuggestedWindow.End) +
		", which a CA does before revoking a certificate; renew it now"
	if ri.ExplanationURL != "" {
		p += " (see " + ri.ExplanationURL + ")"
	}
	return p
}
