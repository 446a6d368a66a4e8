package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/audit"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/storage"
)

// issueFlags are the certificate options of obtain and renew.
type issueFlags struct {
	solverFlags
	certFile, keyFile string
	keyType, profile  string
	preferredChain    string
	replaces          string
	replaceStored     bool
}

func (f *issueFlags) add(cmd *cobra.Command, renew bool) {
	f.solverFlags.add(cmd)
	fl := cmd.Flags()
	if renew {
		fl.StringVar(&f.certFile, "cert", "", "the certificate file to renew, PEM; it is replaced by the new one (required)")
		fl.StringVar(&f.keyFile, "key", "", "the key file, PEM, mode 0600 (default: --cert with .key for .crt)")
	} else {
		fl.StringVar(&f.certFile, "cert", "", "write the chain (PEM) to this file (default NAME.crt, unless --storage is given)")
		fl.StringVar(&f.keyFile, "key", "", "write the key (PEM, mode 0600) to this file (default NAME.key, unless --storage is given)")
		fl.StringVar(&f.replaces, "replaces", "", "the certificate this one replaces (RFC 9773): a PEM file or its ARI ID")
	}
	fl.StringVar(&f.keyType, "key-type", "p256", "certificate key type: p256, p384, rsa2048, rsa4096 (env TLSMINT_KEY_TYPE)")
	fl.StringVar(&f.profile, "profile", "", "certificate profile the CA offers, such as shortlived (env TLSMINT_PROFILE)")
	fl.StringVar(&f.preferredChain, "preferred-chain", "", "pick the chain whose root or issuer has this common name (env TLSMINT_PREFERRED_CHAIN)")
	fl.BoolVar(&f.replaceStored, "replace-stored", false, "with --storage: store it even if the stored certificate expires later")
}

func (a *app) obtainCommand() *cobra.Command {
	var f issueFlags
	cmd := &cobra.Command{
		Use:   "obtain NAME...",
		Short: "Obtain a certificate for names, solving the challenges itself",
		Long: `obtain orders one certificate for the names (DNS names, wildcards, IP
addresses) and solves the challenges with a built-in http-01 server (--http),
a built-in tls-alpn-01 server (--tls-alpn), or by hand for dns-01 (--dns: the
TXT record to create is printed on stderr, and the order goes on once it is
visible at the zone's nameservers) or dns-persist-01 (--dns-persist).
Wildcards need --dns or --dns-persist.

With --dns-persist, no DNS credentials are needed and the record is created
once: when _validation-persist.NAME does not yet hold a record naming the CA
and the account, the exact record is printed on stderr (name, value and a zone
file line), the command waits until every authoritative nameserver of the zone
answers it (--dns-timeout), and only then lets the CA validate. The record is
never deleted: every later order or renewal of the name by the same account
reuses it with no DNS change. It carries policy=wildcard for a wildcard, for a
name whose wildcard is in the same order, and with --wildcard-policy.

The chain and the key are written as PEM files, each atomically (the key with
mode 0600), or, with --storage, into a tlsmint storage where an autotls
Manager for the same CA serves and renews them (under each of the names).
With --storage, the exchanges are also added to the storage's audit trail.

The account is the one of --account-key (see tlsmint account register).`,
		Example: `  tlsmint obtain example.com www.example.com --http :80
  tlsmint obtain example.com --tls-alpn :443 --key-type p384 --cert /etc/tls/example.crt --key /etc/tls/example.key
  tlsmint obtain '*.example.com' example.com --dns
  tlsmint obtain '*.example.com' example.com --dns-persist --dns-timeout 30m
  tlsmint obtain example.com --http :80 --storage /var/lib/tlsmint
  tlsmint obtain 192.0.2.1 --http :80 --profile shortlived
  tlsmint obtain example.com --http :80 --replaces old.crt --preferred-chain "ISRG Root X1"`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.issue(cmd, args, &f, nil)
		},
	}
	f.add(cmd, false)
	return cmd
}

// identifiers turns command-line names into ACME identifiers.
func identifiers(names []string) ([]acme.Identifier, []string, error) {
	var ids []acme.Identifier
	var norm []string
	for _, n := range names {
		if ip, err := netip.ParseAddr(n); err == nil {
			ids = append(ids, acme.IPAddresses(ip)...)
			norm = append(norm, ip.Unmap().String())
			continue
		}
		base, wild := strings.CutPrefix(n, "*.")
		v, err := autotls.NormalizeName(base)
		if err != nil {
			return nil, nil, usagef("%q is not a valid name: %v", n, err)
		}
		if wild {
			v = "*." + v
		}
		ids = append(ids, acme.DNSNames(v)...)
		norm = append(norm, v)
	}
	return ids, norm, nil
}

// certOutput is what obtain and renew print.
type certOutput struct {
	Names          []string  `json:"names"`
	Serial         string    `json:"serial"`
	NotBefore      time.Time `json:"not_before"`
	NotAfter       time.Time `json:"not_after"`
	Issuer         string    `json:"issuer"`
	Root           string    `json:"chain_root"`
	Directory      string    `json:"directory"`
	ARIID          string    `json:"ari_id,omitempty"`
	CertFile       string    `json:"cert_file,omitempty"`
	KeyFile        string    `json:"key_file,omitempty"`
	Stored         []string  `json:"stored,omitempty"`
	OrderURL       string    `json:"order_url,omitempty"`
	CertificateURL string    `json:"certificate_url,omitempty"`
	Replaced       string    `json:"replaced,omitempty"`
}

// fileBase is the default file name stem for a certificate's first name.
func fileBase(name string) string {
	if base, ok := strings.CutPrefix(name, "*."); ok {
		return "_wildcard." + base
	}
	return strings.ReplaceAll(name, ":", "-")
}

// keyTypeOf returns the --key-type of key.
func keyTypeOf(key crypto.PublicKey) string {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P384() {
			return "p384"
		}
		return "p256"
	case *rsa.PublicKey:
		if k.N.BitLen() > 2048 {
			return "rsa4096"
		}
		return "rsa2048"
	}
	return "p256"
}

// issue obtains a certificate for names (obtain), or renews old (renew,
// where names come from it): it prepares the request, opens --storage,
// picks and checks every destination, orders, then saves what was issued.
func (a *app) issue(cmd *cobra.Command, names []string, f *issueFlags, old *x509.Certificate) (err error) {
	ctx := cmd.Context()
	is, err := a.newIssuance(names, f, old)
	if err != nil {
		return err
	}
	// Storage first, so that a wrong --storage orders nothing.
	closeStore, err := is.openStorage(ctx)
	if err != nil {
		return err
	}
	defer closeStore()
	issued := false
	if is.trail != nil {
		// A run that fails or is interrupted before the certificate is
		// issued leaves a failed decision per name, as a Manager's failed
		// order does (after issuance, the trail has the obtained ones).
		defer func() {
			if err != nil && !issued {
				is.recordFailure(ctx, err)
			}
		}()
	}
	is.chooseFiles()
	if err := is.checkDestinations(ctx); err != nil {
		return err
	}
	res, accountURL, stop, err := is.order(ctx)
	if err != nil {
		return err
	}
	defer stop()
	issued = true
	return is.save(ctx, res, accountURL)
}

// issuance is one run of obtain or renew, carried through its steps.
type issuance struct {
	a         *app
	f         *issueFlags
	norm      []string // the names, normalised
	directory string
	certKey   crypto.Signer
	req       acme.ObtainRequest
	// store and trail are --storage's, nil without it.
	store storage.Storage
	trail *audit.Log
	// certFile and keyFile are where the chain and key are written,
	// empty when only --storage is.
	certFile, keyFile string
}

// newIssuance checks the names and --ca, makes the certificate's key and
// the request (with what it replaces).
func (a *app) newIssuance(names []string, f *issueFlags, old *x509.Certificate) (*issuance, error) {
	ids, norm, err := identifiers(names)
	if err != nil {
		return nil, err
	}
	if err := f.solverFlags.checkWildcards(norm); err != nil {
		return nil, err
	}
	if err := a.checkCA(); err != nil {
		return nil, err
	}
	directory, _ := a.directory()
	certKey, err := newKey(f.keyType)
	if err != nil {
		return nil, err
	}
	replaces, err := replacesID(f, old)
	if err != nil {
		return nil, err
	}
	return &issuance{
		a: a, f: f, norm: norm, directory: directory, certKey: certKey,
		req: acme.ObtainRequest{Identifiers: ids, CertKey: certKey, Profile: f.profile, PreferredChain: f.preferredChain, Replaces: replaces},
	}, nil
}

// replacesID returns the ARI ID of the certificate the new one replaces:
// old's (renew), or --replaces' (a PEM file, or an ID as it is); empty for
// none.
func replacesID(f *issueFlags, old *x509.Certificate) (string, error) {
	if old != nil {
		if id, err := acme.CertificateID(old); err == nil {
			return id, nil
		}
		return "", nil
	}
	if f.replaces == "" {
		return "", nil
	}
	chain, _, err := parseCertFile(f.replaces)
	if err == nil {
		id, err := acme.CertificateID(chain[0])
		if err != nil {
			return "", usagef("--replaces %s: %v", f.replaces, err)
		}
		return id, nil
	}
	if _, serr := os.Stat(f.replaces); serr == nil || strings.ContainsAny(f.replaces, "/\\") {
		return "", usagef("--replaces: %v", err)
	}
	return f.replaces, nil
}

// openStorage opens --storage, if given, and its audit trail; the
// function returned closes both.
func (is *issuance) openStorage(ctx context.Context) (func(), error) {
	if is.a.storageURL == "" {
		return func() {}, nil
	}
	s, closeStore, err := is.a.openStorage(ctx)
	if err != nil {
		return nil, err
	}
	is.store = s
	is.trail = &audit.Log{Storage: s, Node: cliNode(), Retention: -1}
	return func() {
		is.trail.Close()
		closeStore()
	}, nil
}

// recordFailure adds a failed decision per name to the trail: the run
// failed, or was interrupted, before the certificate was issued.
func (is *issuance) recordFailure(ctx context.Context, err error) {
	why := err
	if ctx.Err() != nil {
		why = fmt.Errorf("interrupted: %w", err)
	}
	for _, name := range is.norm {
		is.trail.OnEvent(autotls.Event{Type: autotls.EventFailed, Name: name, Issuer: is.directory, Err: why})
	}
}

// chooseFiles picks the chain and key files: the flags', else NAME.crt
// and NAME.key, unless only --storage is given.
func (is *issuance) chooseFiles() {
	certFile, keyFile := is.f.certFile, is.f.keyFile
	if is.store == nil || certFile != "" || keyFile != "" {
		if certFile == "" {
			certFile = fileBase(is.norm[0]) + ".crt"
		}
		if keyFile == "" {
			keyFile = strings.TrimSuffix(certFile, ".crt") + ".key"
			if keyFile == certFile {
				keyFile = certFile + ".key"
			}
		}
	}
	is.certFile, is.keyFile = certFile, keyFile
}

// checkDestinations checks every destination before the first ACME
// request: a certificate issued and then lost still counts against the
// CA's limits.
func (is *issuance) checkDestinations(ctx context.Context) error {
	if is.certFile != "" {
		for _, d := range []struct{ flag, path string }{{"--cert", is.certFile}, {"--key", is.keyFile}} {
			if err := checkWritable(d.path); err != nil {
				return fmt.Errorf("cannot write %s %s: %w: nothing was ordered", d.flag, d.path, err)
			}
		}
	}
	if is.store != nil {
		if err := checkStorage(ctx, is.store); err != nil {
			return fmt.Errorf("cannot write to --storage %s: %w: nothing was ordered", is.a.storageURL, err)
		}
	}
	return nil
}

// order obtains the certificate with the account and the solvers of the
// flags. On success it returns the result, the account's URL and the
// function that stops the solvers; on failure they are stopped.
func (is *issuance) order(ctx context.Context) (res *acme.Certificate, accountURL string, stop func(), err error) {
	a := is.a
	p := a.newProgress()
	var obs []acme.Observer
	obs = append(obs, progressObserver{p})
	if is.trail != nil {
		obs = append(obs, is.trail)
	}
	c, _, _, err := a.account(ctx, obs...)
	if err != nil {
		return nil, "", nil, err
	}
	set, err := is.f.solverFlags.start(a, p, is.norm)
	if err != nil {
		return nil, "", nil, err
	}
	req := is.req
	req.Solvers, req.ChallengeTypes = set.solvers, set.types
	res, err = c.Obtain(ctx, req)
	if err != nil {
		set.stop()
		var ce *acme.ChallengeError
		var dw *errDNSWait
		if errors.As(err, &dw) {
			return nil, "", nil, fmt.Errorf("obtaining the certificate: %w", err)
		}
		if errors.As(err, &ce) {
			return nil, "", nil, fmt.Errorf("the CA could not validate %s via %s: %w: check that the name points at this machine and the port is reachable from the internet", ce.Identifier.Value, ce.Type, err)
		}
		return nil, "", nil, a.caError("obtaining the certificate", err)
	}
	p.step("done")
	if set.persist != nil {
		set.persist.finish()
	}
	return res, c.AccountURL, set.stop, nil
}

// save writes the issued certificate to its files and into --storage,
// whatever happens to the command's context now (Ctrl-C), within a
// bound, and prints it. A write that fails saves the chain and key in a
// rescue file instead.
func (is *issuance) save(ctx context.Context, res *acme.Certificate, accountURL string) error {
	a := is.a
	leaf := res.Leaf()
	out := certOutput{
		Names: is.norm, Serial: hex.EncodeToString(leaf.SerialNumber.Bytes()),
		NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter,
		Issuer: leaf.Issuer.CommonName, Root: res.Chain.TopIssuer(), Directory: is.directory,
		OrderURL: res.Order.URL, CertificateURL: res.Order.Certificate,
		Replaced: is.req.Replaces,
	}
	out.ARIID, _ = acme.CertificateID(leaf)

	keyPEM, err := encodeKey(is.certKey)
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	// lost is the error of a write that failed after issuance: the chain
	// and key go to a rescue file the message names.
	lost := func(what string, err error) error {
		if is.trail != nil {
			for _, name := range is.norm {
				is.trail.OnEvent(autotls.Event{Type: autotls.EventNotStored, Name: name, Issuer: is.directory, Serial: out.Serial, NotAfter: leaf.NotAfter, Err: err})
			}
		}
		msg := fmt.Sprintf("the certificate was issued (serial %s) but %s: %v", out.Serial, what, err)
		if path, rerr := rescue(is.norm[0], out.Serial, res.Chain.PEM, keyPEM); rerr == nil {
			msg += "; its key and chain are saved in " + path + " (mode 0600)"
			a.wrote(path + " (the issued key and chain)")
		} else {
			msg += "; saving its key and chain elsewhere failed too: " + rerr.Error()
		}
		return errors.New(msg)
	}
	if is.certFile != "" {
		if err := writeFiles(fileSpec{is.keyFile, keyPEM, 0o600}, fileSpec{is.certFile, res.Chain.PEM, 0o644}); err != nil {
			return lost("not saved", err)
		}
		out.CertFile, out.KeyFile = is.certFile, is.keyFile
		a.wrote(is.certFile)
		a.wrote(is.keyFile)
	}
	if is.store != nil {
		for _, name := range is.norm {
			err := autotls.ImportCertificate(wctx, is.store, autotls.ImportedCertificate{
				Directory: is.directory, Name: name, ChainPEM: res.Chain.PEM, Key: is.certKey,
				OrderURL: res.Order.URL, CertificateURL: res.Order.Certificate, AccountURL: accountURL,
				Replace: is.f.replaceStored,
			})
			if err != nil {
				return lost("not stored under "+name, err)
			}
			out.Stored = append(out.Stored, name)
			a.wrote(name + " in the storage")
			is.trail.OnEvent(autotls.Event{Type: autotls.EventObtained, Name: name, Issuer: is.directory, NotAfter: leaf.NotAfter, Serial: out.Serial})
		}
	}
	return a.printCert(out)
}

func (a *app) printCert(out certOutput) error {
	if a.jsonOut {
		return a.printJSON(out)
	}
	w := a.table()
	fmt.Fprintf(w, "names:\t%s\n", strings.Join(out.Names, ", "))
	fmt.Fprintf(w, "serial:\t%s\n", out.Serial)
	fmt.Fprintf(w, "valid:\t%s to %s\n", fmtTime(out.NotBefore), fmtTime(out.NotAfter))
	fmt.Fprintf(w, "issuer:\t%s (root %s)\n", out.Issuer, out.Root)
	if out.CertFile != "" {
		fmt.Fprintf(w, "certificate:\t%s\n", out.CertFile)
		fmt.Fprintf(w, "key:\t%s\n", out.KeyFile)
	}
	if len(out.Stored) > 0 {
		fmt.Fprintf(w, "stored:\t%s\n", strings.Join(out.Stored, ", "))
	}
	if out.Replaced != "" {
		fmt.Fprintf(w, "replaces:\t%s\n", out.Replaced)
	}
	return w.Flush()
}

// cliNode names this process in an audit trail.
func cliNode() string {
	h, _ := os.Hostname()
	if h == "" {
		h = "host"
	}
	return "tlsmint-cli-" + h
}
