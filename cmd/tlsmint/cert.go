package main

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/durfmt"
)

// ariOutput is what ari prints, and renew when nothing is due.
type ariOutput struct {
	Certificate    string    `json:"certificate"`
	Names          []string  `json:"names"`
	NotAfter       time.Time `json:"not_after"`
	ARIID          string    `json:"ari_id,omitempty"`
	Offered        bool      `json:"ari_offered"`
	WindowStart    time.Time `json:"window_start,omitzero"`
	WindowEnd      time.Time `json:"window_end,omitzero"`
	ExplanationURL string    `json:"explanation_url,omitempty"`
	RetryAfter     int64     `json:"retry_after_seconds,omitempty"`
	// RenewFrom is when renewal is due: the window's start with ARI, else
	// when a third of the lifetime is left; Due whether that has come.
	RenewFrom time.Time `json:"renew_from"`
	Reason    string    `json:"reason"`
	Due       bool      `json:"due"`
	Renewed   bool      `json:"renewed"`
}

func leafNames(leaf *x509.Certificate) []string {
	names := append([]string(nil), leaf.DNSNames...)
	for _, ip := range leaf.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}

// renewalInfo asks the CA when leaf should be renewed: its ARI window
// when it offers ARI, else when a third of the lifetime is left.
func (a *app) renewalInfo(cmd *cobra.Command, file string, leaf *x509.Certificate) (ariOutput, error) {
	out := ariOutput{Certificate: file, Names: leafNames(leaf), NotAfter: leaf.NotAfter}
	out.ARIID, _ = acme.CertificateID(leaf)
	c, err := a.client(nil)
	if err != nil {
		return out, err
	}
	ri, err := c.RenewalInfo(cmd.Context(), leaf)
	switch {
	case err == nil:
		out.Offered = true
		out.WindowStart, out.WindowEnd = ri.SuggestedWindow.Start, ri.SuggestedWindow.End
		out.ExplanationURL = ri.ExplanationURL
		out.RetryAfter = int64(ri.RetryAfter / time.Second)
		out.RenewFrom, out.Reason = out.WindowStart, "the CA's renewal window (ARI)"
		if !out.WindowEnd.IsZero() && out.WindowEnd.Before(time.Now()) {
			// What a CA does before it revokes (an incident, a key
			// compromise): the explanation URL says why.
			out.Reason = "the CA moved its renewal window (ARI) into the past, ending " + fmtTime(out.WindowEnd) +
				": it asks for renewal at once, as it does before revoking a certificate"
			if out.ExplanationURL != "" {
				out.Reason += "; see " + out.ExplanationURL
			}
		}
	case errors.Is(err, acme.ErrNoRenewalInfo):
		life := leaf.NotAfter.Sub(leaf.NotBefore)
		out.RenewFrom, out.Reason = leaf.NotAfter.Add(-life/3), "a third of the lifetime left (the CA offers no ARI)"
	default:
		return out, a.caError("asking for renewal information", err)
	}
	out.Due = !time.Now().Before(out.RenewFrom)
	return out, nil
}

func (a *app) printARI(out ariOutput) error {
	if a.jsonOut {
		return a.printJSON(out)
	}
	w := a.table()
	fmt.Fprintf(w, "certificate:\t%s\n", out.Certificate)
	fmt.Fprintf(w, "names:\t%s\n", strings.Join(out.Names, ", "))
	fmt.Fprintf(w, "expires:\t%s (%s)\n", fmtTime(out.NotAfter), leftText(time.Until(out.NotAfter)))
	if out.Offered {
		fmt.Fprintf(w, "renewal window:\t%s to %s\n", fmtTime(out.WindowStart), fmtTime(out.WindowEnd))
		if out.ExplanationURL != "" {
			fmt.Fprintf(w, "explanation:\t%s\n", out.ExplanationURL)
		}
		if out.RetryAfter > 0 {
			fmt.Fprintf(w, "ask again after:\t%s\n", durfmt.Format(time.Duration(out.RetryAfter)*time.Second))
		}
	} else {
		fmt.Fprintf(w, "renewal window:\tnone: the CA offers no ARI\n")
	}
	verdict := "not yet: renew from " + fmtTime(out.RenewFrom)
	if out.Due {
		verdict = "now"
	}
	fmt.Fprintf(w, "renew:\t%s (%s)\n", verdict, out.Reason)
	return w.Flush()
}

func (a *app) ariCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "ari CERT",
		Short: "Show the CA's renewal window for a certificate (ARI, RFC 9773)",
		Long: `ari asks the CA for the renewal information of the certificate in the PEM file
CERT: the suggested window, the CA's explanation (after a revocation or an
incident), and whether renewal is due now. Without ARI at the CA, renewal is
due when a third of the lifetime is left. No account is needed.`,
		Example: `  tlsmint ari example.com.crt
  tlsmint ari example.com.crt --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			chain, _, err := parseCertFile(args[0])
			if err != nil {
				return err
			}
			out, err := a.renewalInfo(cmd, args[0], chain[0])
			if err != nil {
				return err
			}
			return a.printARI(out)
		},
	}
}

func (a *app) renewCommand() *cobra.Command {
	var f issueFlags
	var force bool
	cmd := &cobra.Command{
		Use:   "renew --cert FILE",
		Short: "Renew a certificate file when the CA's renewal window (ARI) says so",
		Long: `renew reads the certificate in --cert and renews it when due: from the start of
the CA's ARI window when the CA offers ARI (the new order names the old
certificate in "replaces"), else once a third of its lifetime is left. When it
is not due, it says so and exits 0, so it can run from cron daily. The new chain
and key replace the files atomically. The key type stays the old one unless
--key-type is given.`,
		Example: `  tlsmint renew --cert example.com.crt --http :80
  tlsmint renew --cert /etc/tls/example.crt --key /etc/tls/example.key --tls-alpn :443
  tlsmint renew --cert example.com.crt --dns --force
  tlsmint renew --cert wildcard.crt --dns-persist`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if f.certFile == "" {
				return usagef("no certificate: pass --cert FILE")
			}
			if f.keyFile == "" {
				f.keyFile = strings.TrimSuffix(f.certFile, ".crt") + ".key"
				if f.keyFile == f.certFile {
					f.keyFile += ".key"
				}
			}
			if err := a.checkCA(); err != nil {
				return err
			}
			chain, _, err := parseCertFile(f.certFile)
			if err != nil {
				return err
			}
			leaf := chain[0]
			if !flagSet(cmd, "key-type") {
				f.keyType = keyTypeOf(leaf.PublicKey)
			}
			info, err := a.renewalInfo(cmd, f.certFile, leaf)
			if err != nil {
				return err
			}
			if !info.Due && !force {
				if !a.jsonOut {
					fmt.Fprintf(a.stderr, "not due: renew from %s (%s); --force renews now\n", fmtTime(info.RenewFrom), info.Reason)
				}
				return a.printARI(info)
			}
			return a.issue(cmd, leafNames(leaf), &f, leaf)
		},
	}
	f.add(cmd, true)
	cmd.Flags().BoolVar(&force, "force", false, "renew even when not due")
	return cmd
}

// reasons are the revocation reasons --reason accepts.
var reasons = map[string]int{
	"unspecified":          acme.ReasonUnspecified,
	"keycompromise":        acme.ReasonKeyCompromise,
	"affiliationchanged":   acme.ReasonAffiliationChanged,
	"superseded":           acme.ReasonSuperseded,
	"cessationofoperation": acme.ReasonCessationOfOperation,
}

func parseReason(s string) (int, error) {
	k := strings.ToLower(strings.NewReplacer("-", "", "_", "").Replace(s))
	if r, ok := reasons[k]; ok {
		return r, nil
	}
	if n, err := strconv.Atoi(s); err == nil && n >= 0 && n <= 10 {
		return n, nil
	}
	return 0, usagef("--reason %q: want unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation or a number", s)
}

func (a *app) revokeCommand() *cobra.Command {
	var reason, keyFile string
	cmd := &cobra.Command{
		Use:   "revoke CERT",
		Short: "Revoke a certificate, by the account key or by the certificate's own key",
		Long: `revoke asks the CA to revoke the certificate in the PEM file CERT. By default the
request is signed by the account key (the account that obtained it, or one
that holds authorizations for all its names); with --key it is signed by the
certificate's own private key, which needs no account — the way to revoke a
certificate whose key leaked.`,
		Example: `  tlsmint revoke example.com.crt
  tlsmint revoke example.com.crt --reason superseded
  tlsmint revoke leaked.crt --key leaked.key --reason keyCompromise`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			code, err := parseReason(reason)
			if err != nil {
				return err
			}
			if err := a.checkCA(); err != nil {
				return err
			}
			chain, _, err := parseCertFile(args[0])
			if err != nil {
				return err
			}
			leaf := chain[0]
			var by string
			if keyFile != "" {
				key, err := loadKey(keyFile)
				if err != nil {
					return fmt.Errorf("--key: %w", err)
				}
				if !publicKeysEqual(key.Public(), leaf.PublicKey) {
					return usagef("--key %s is not the key of %s", keyFile, args[0])
				}
				c, err := a.client(nil)
				if err != nil {
					return err
				}
				if err := c.RevokeCertificate(cmd.Context(), leaf.Raw, key, code); err != nil {
					return a.revokeError(err)
				}
				by = "certificate key"
			} else {
				c, _, _, err := a.account(cmd.Context())
				if err != nil {
					return err
				}
				if err := c.RevokeCertificate(cmd.Context(), leaf.Raw, nil, code); err != nil {
					return a.revokeError(err)
				}
				by = "account key"
			}
			out := struct {
				Certificate string   `json:"certificate"`
				Names       []string `json:"names"`
				Serial      string   `json:"serial"`
				Reason      int      `json:"reason"`
				SignedBy    string   `json:"signed_by"`
			}{args[0], leafNames(leaf), fmt.Sprintf("%x", leaf.SerialNumber.Bytes()), code, by}
			if a.jsonOut {
				return a.printJSON(out)
			}
			fmt.Fprintf(a.stdout, "revoked %s (serial %s, reason %d), signed by the %s\n", strings.Join(out.Names, ", "), out.Serial, code, by)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "unspecified", "revocation reason: unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation")
	cmd.Flags().StringVar(&keyFile, "key", "", "sign with the certificate's private key (PEM) instead of the account key")
	return cmd
}

func (a *app) revokeError(err error) error {
	switch {
	case errors.Is(err, acme.ErrAlreadyRevoked):
		return fmt.Errorf("the certificate is already revoked: %w", err)
	case errors.Is(err, acme.ErrUnauthorized):
		return fmt.Errorf("the CA refused the revocation (%w): sign with the account that obtained it, or with the certificate's key (--key)", err)
	}
	return a.caError("revoking the certificate", err)
}

// publicKeysEqual compares two public keys.
func publicKeysEqual(a, b crypto.PublicKey) bool {
	x, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && x.Equal(b)
}
