package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/internal/durfmt"
)

func (a *app) accountCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "account",
		Short: "Register, show, update, roll over or deactivate the ACME account",
		Long: `The account is identified by its key file (--account-key, PEM; by default one
per CA under the user's config folder). register creates the key, with mode
0600, when the file does not exist.`,
		Example: `  tlsmint account register --email ops@example.com --accept-tos
  tlsmint account show --json
  tlsmint account update --email ops@example.com --email oncall@example.com
  tlsmint account rollover
  tlsmint account deactivate --yes`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.registerCommand(), a.showAccountCommand(), a.updateAccountCommand(), a.rolloverCommand(), a.deactivateCommand())
	return cmd
}

// accountOutput is what the account commands print.
type accountOutput struct {
	URL        string   `json:"url"`
	Status     string   `json:"status"`
	Contact    []string `json:"contact,omitempty"`
	Orders     string   `json:"orders,omitempty"`
	Directory  string   `json:"directory"`
	KeyFile    string   `json:"key_file"`
	Thumbprint string   `json:"key_thumbprint"`
	Created    bool     `json:"key_created,omitempty"`
}

func (a *app) printAccount(c *acme.Client, key crypto.Signer, acct *acme.Account, keyFile string, created bool) error {
	tp, _ := acme.Thumbprint(key.Public())
	out := accountOutput{URL: acct.URL, Status: acct.Status, Contact: acct.Contact, Orders: acct.Orders, Directory: c.DirectoryURL, KeyFile: keyFile, Thumbprint: tp, Created: created}
	if out.URL == "" {
		out.URL = c.AccountURL
	}
	if a.jsonOut {
		return a.printJSON(out)
	}
	w := a.table()
	fmt.Fprintf(w, "account:\t%s\n", out.URL)
	fmt.Fprintf(w, "status:\t%s\n", dash(out.Status))
	fmt.Fprintf(w, "contact:\t%s\n", dash(strings.Join(out.Contact, ", ")))
	fmt.Fprintf(w, "directory:\t%s\n", out.Directory)
	fmt.Fprintf(w, "key file:\t%s\n", out.KeyFile)
	fmt.Fprintf(w, "key thumbprint:\t%s\n", out.Thumbprint)
	return w.Flush()
}

func contacts(emails []string) ([]string, error) {
	var out []string
	for _, e := range emails {
		e = strings.TrimPrefix(strings.TrimSpace(e), "mailto:")
		if e == "" || !strings.Contains(e, "@") || strings.ContainsAny(e, " ,<>\n") {
			return nil, usagef("--email %q: want a bare address such as ops@example.com", e)
		}
		out = append(out, "mailto:"+e)
	}
	return out, nil
}

func (a *app) registerCommand() *cobra.Command {
	var (
		emails          []string
		acceptTOS       bool
		eabKID, eabFile string
		keyType         string
	)
	cmd := &cobra.Command{
		Use:   "register",
		Short: "Register an account (creating its key file when missing)",
		Long: `register creates an account at the CA for the key in --account-key, creating
the key (mode 0600) when the file does not exist; for a key already registered
it shows the existing account.

The CA's terms of service must be accepted explicitly with --accept-tos.

For CAs that require External Account Binding (ZeroSSL, Google Trust Services,
some private CAs), give the key ID with --eab-kid or TLSMINT_EAB_KID, and the
MAC key (base64url, as the CA hands it out) in a file with --eab-hmac-file or
in TLSMINT_EAB_HMAC. The MAC key is never taken from the command line, which
other users of the machine can read.`,
		Example: `  tlsmint account register --email ops@example.com --accept-tos
  tlsmint --ca letsencrypt-staging account register --accept-tos
  TLSMINT_EAB_KID=kid-1 TLSMINT_EAB_HMAC=$(cat mac.txt) tlsmint --ca zerossl account register --accept-tos
  tlsmint --ca https://ca.internal/acme/directory --ca-roots root.pem account register --accept-tos --eab-kid kid-1 --eab-hmac-file mac.txt`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			ct, err := contacts(emails)
			if err != nil {
				return err
			}
			eab, err := a.eab(eabKID, eabFile)
			if err != nil {
				return err
			}
			if err := a.checkCA(); err != nil {
				return err
			}
			path, err := a.accountKeyPath()
			if err != nil {
				return err
			}
			key, err := loadKey(path)
			var staged *pendingFile
			switch {
			case errors.Is(err, errNoKey):
				// A new key, staged beside its path and put in place only
				// once the CA has registered it.
				if key, err = newKey(keyType); err != nil {
					return err
				}
				pemKey, err := encodeKey(key)
				if err != nil {
					return err
				}
				if staged, err = stageFile(path, pemKey, 0o600); err != nil {
					return fmt.Errorf("creating account key %s: %w", path, err)
				}
				defer staged.discard()
			case err != nil:
				return a.keyError(path, err)
			}
			c, err := a.client(key)
			if err != nil {
				return err
			}
			acct, err := c.Register(ctx, acme.Account{Contact: ct, TermsOfServiceAgreed: acceptTOS, ExternalAccountBinding: eab})
			if errors.Is(err, acme.ErrTermsNotAgreed) {
				tos := "the CA's terms of service"
				if dir, derr := c.Directory(ctx); derr == nil && dir.Meta.TermsOfService != "" {
					tos = dir.Meta.TermsOfService
				}
				return usagef("no ToS acceptance: pass --accept-tos after reading %s", tos)
			}
			if errors.Is(err, acme.ErrExternalAccountRequired) && eab == nil {
				return usagef("the CA requires External Account Binding: set TLSMINT_EAB_KID and TLSMINT_EAB_HMAC, or pass --eab-kid ID --eab-hmac-file FILE")
			}
			if err != nil {
				if eab != nil && (errors.Is(err, acme.ErrUnauthorized) || errors.Is(err, acme.ErrMalformed) || errors.Is(err, acme.ErrExternalAccountRequired)) {
					return fmt.Errorf("registering the account: the CA refused the External Account Binding: check the key ID %q and the MAC key: %w", eab.KeyID, err)
				}
				return a.caError("registering the account", err)
			}
			created := false
			if staged != nil {
				if err := staged.commitNew(); err != nil {
					return fmt.Errorf("the account %s is registered, but its key could not be saved to %s: %w", acct.URL, path, err)
				}
				created = true
				if !a.jsonOut {
					fmt.Fprintf(a.stderr, "created account key %s (mode 0600)\n", path)
				}
			}
			return a.printAccount(c, key, acct, path, created)
		},
	}
	f := cmd.Flags()
	f.StringSliceVar(&emails, "email", nil, "contact address, repeatable (env TLSMINT_EMAIL)")
	f.BoolVar(&acceptTOS, "accept-tos", false, "agree to the CA's terms of service (read them first)")
	f.StringVar(&eabKID, "eab-kid", "", "External Account Binding key ID (env TLSMINT_EAB_KID)")
	f.StringVar(&eabFile, "eab-hmac-file", "", "file holding the EAB MAC key, base64url (env TLSMINT_EAB_HMAC_FILE, or the key itself in TLSMINT_EAB_HMAC)")
	f.StringVar(&keyType, "key-type", "p256", "type of a new account key: p256, p384, rsa2048, rsa4096")
	return cmd
}

// eab reads the External Account Binding from the key ID and the MAC key
// file or TLSMINT_EAB_HMAC; nil when neither is given.
func (a *app) eab(kid, file string) (*acme.ExternalAccountBinding, error) {
	var mac string
	switch {
	case file != "":
		b, err := readSmallFile(file)
		if err != nil {
			return nil, fmt.Errorf("reading --eab-hmac-file: %w", err)
		}
		mac = strings.TrimSpace(string(b))
	default:
		mac = strings.TrimSpace(a.getenv("TLSMINT_EAB_HMAC"))
	}
	switch {
	case kid == "" && mac == "":
		return nil, nil
	case kid == "":
		return nil, usagef("an EAB MAC key without a key ID: pass --eab-kid or set TLSMINT_EAB_KID")
	case mac == "":
		return nil, usagef("an EAB key ID without a MAC key: pass --eab-hmac-file FILE or set TLSMINT_EAB_HMAC")
	}
	key, err := acme.DecodeEABKey(mac)
	if err != nil {
		return nil, usagef("the EAB MAC key is not base64url (as the CA hands it out): %v", err)
	}
	return &acme.ExternalAccountBinding{KeyID: kid, HMACKey: key}, nil
}

// keyError explains a key file that cannot be used.
func (a *app) keyError(path string, err error) error {
	if errors.Is(err, errNoKey) {
		return usagef("no account key at %s: run tlsmint account register --accept-tos first, or pass --account-key FILE", path)
	}
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("cannot read the account key %s: %w: check its owner and mode (0600)", path, err)
	}
	return fmt.Errorf("account key %s: %w", path, err)
}

// caError explains a failed exchange with the CA, with the fix when it is
// a usual one.
func (a *app) caError(what string, err error) error {
	dir, _ := a.directory()
	var netErr net.Error
	var opErr *net.OpError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var rte *requestTimeoutError
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &hostErr):
		return fmt.Errorf("%s: the CA's HTTPS certificate is not trusted (%w): for a private CA, pass --ca-roots FILE", what, err)
	case errors.As(err, &rte):
		return fmt.Errorf("%s: the CA at %s did not answer within %s (--request-timeout): it may be overloaded or unreachable; try again later, or allow longer with --request-timeout", what, dir, durfmt.Format(rte.timeout))
	case errors.As(err, &opErr), errors.As(err, &netErr):
		return fmt.Errorf("%s: cannot reach the CA at %s (%w): check --ca and the network", what, dir, err)
	case errors.Is(err, acme.ErrAccountDoesNotExist):
		return fmt.Errorf("%s: the CA has no account for this key (%w): run tlsmint account register --accept-tos", what, err)
	case errors.Is(err, acme.ErrRateLimited):
		return fmt.Errorf("%s: rate limited by the CA (%w): wait and try again", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// account loads the account key and looks the account up at the CA.
func (a *app) account(ctx context.Context, obs ...acme.Observer) (*acme.Client, *acme.Account, string, error) {
	if err := a.checkCA(); err != nil {
		return nil, nil, "", err
	}
	path, err := a.accountKeyPath()
	if err != nil {
		return nil, nil, "", err
	}
	key, err := loadKey(path)
	if err != nil {
		return nil, nil, path, a.keyError(path, err)
	}
	warnMode(a, path)
	c, err := a.client(key, obs...)
	if err != nil {
		return nil, nil, path, err
	}
	acct, err := c.LookupAccount(ctx)
	if err != nil {
		return nil, nil, path, a.caError("looking up the account", err)
	}
	return c, acct, path, nil
}

// warnMode warns about a key file others can read.
func warnMode(a *app, path string) {
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		fmt.Fprintf(a.stderr, "warning: %s is readable by others (mode %04o): chmod 600 %s\n", path, fi.Mode().Perm(), path)
	}
}

func (a *app) showAccountCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "show",
		Short: "Show the account of the key file",
		Example: `  tlsmint account show
  tlsmint --ca letsencrypt-staging account show --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, acct, path, err := a.account(cmd.Context())
			if err != nil {
				return err
			}
			return a.printAccount(c, c.Key, acct, path, false)
		},
	}
}

func (a *app) updateAccountCommand() *cobra.Command {
	var emails []string
	var none bool
	cmd := &cobra.Command{
		Use:   "update",
		Short: "Replace the account's contact addresses",
		Example: `  tlsmint account update --email ops@example.com --email oncall@example.com
  tlsmint account update --no-email`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(emails) == 0 && !none {
				return usagef("nothing to update: pass --email ADDRESS (repeatable) or --no-email")
			}
			if len(emails) > 0 && none {
				return usagef("--email and --no-email exclude each other")
			}
			ct, err := contacts(emails)
			if err != nil {
				return err
			}
			c, _, path, err := a.account(cmd.Context())
			if err != nil {
				return err
			}
			acct, err := c.UpdateAccount(cmd.Context(), acme.Account{Contact: ct})
			if err != nil {
				return a.caError("updating the account", err)
			}
			return a.printAccount(c, c.Key, acct, path, false)
		},
	}
	cmd.Flags().StringSliceVar(&emails, "email", nil, "contact address, repeatable; replaces the current ones")
	cmd.Flags().BoolVar(&none, "no-email", false, "remove every contact address")
	return cmd
}

func (a *app) rolloverCommand() *cobra.Command {
	var newKeyFile, keyType string
	cmd := &cobra.Command{
		Use:   "rollover",
		Short: "Replace the account key with a new one",
		Long: `rollover replaces the account's key at the CA (RFC 8555, section 7.3.5) and then
the key file: the new key is written beside it first, so that neither a failed
rollover nor a crash loses the key the CA knows. After it the old key is
refused by the CA.`,
		Example: `  tlsmint account rollover
  tlsmint account rollover --key-type p384
  tlsmint account rollover --new-key next.key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var next crypto.Signer
			var err error
			if newKeyFile != "" {
				if next, err = loadKey(newKeyFile); err != nil {
					return usagef("--new-key: %v", err)
				}
			} else if next, err = newKey(keyType); err != nil {
				return err
			}
			c, _, path, err := a.account(cmd.Context())
			if err != nil {
				return err
			}
			pemKey, err := encodeKey(next)
			if err != nil {
				return err
			}
			staged, err := stageFile(path, pemKey, 0o600)
			if err != nil {
				return fmt.Errorf("writing the new key beside %s: %w", path, err)
			}
			if err := c.RolloverKey(cmd.Context(), next); err != nil {
				staged.discard()
				return a.caError("rolling over the account key", err)
			}
			if err := staged.commit(); err != nil {
				return fmt.Errorf("the CA now knows the new key, but %s could not be replaced: the new key is in %s: %w", path, staged.tmp, err)
			}
			acct, err := c.GetAccount(cmd.Context())
			if err != nil {
				return a.caError("reading the account", err)
			}
			if !a.jsonOut {
				fmt.Fprintf(a.stderr, "rolled over: %s holds the new key\n", path)
			}
			return a.printAccount(c, next, acct, path, false)
		},
	}
	cmd.Flags().StringVar(&newKeyFile, "new-key", "", "use this key file's key instead of generating one")
	cmd.Flags().StringVar(&keyType, "key-type", "p256", "type of the generated key: p256, p384, rsa2048, rsa4096")
	return cmd
}

func (a *app) deactivateCommand() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "deactivate",
		Short: "Deactivate the account for good",
		Long: `deactivate tells the CA never to accept the account again (RFC 8555, section
7.3.6). It cannot be undone: pass --yes.`,
		Example: `  tlsmint account deactivate --yes`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !yes {
				return usagef("deactivation cannot be undone: pass --yes to confirm")
			}
			c, _, path, err := a.account(cmd.Context())
			if err != nil {
				return err
			}
			acct, err := c.DeactivateAccount(cmd.Context())
			if err != nil {
				return a.caError("deactivating the account", err)
			}
			return a.printAccount(c, c.Key, acct, path, false)
		},
	}
	cmd.Flags().BoolVar(&yes, "yes", false, "confirm the deactivation")
	return cmd
}
