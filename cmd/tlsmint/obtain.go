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
// where names come from it).
func (a *app) issue(cmd *cobra.Command, names []string, f *issueFlags, old *x509.Certificate) (err error) {
	ctx := cmd.Context()
	ids, norm, err := identifiers(names)
	if err != nil {
		return err
	}
	if err := f.solverFlags.checkWildcards(norm); err != nil {
		return err
	}
	if err := a.checkCA(); err != nil {
		return err
	}
	directory, _ := a.directory()
	certKey, err := newKey(f.keyType)
	if err != nil {
		return err
	}
	req := acme.ObtainRequest{Identifiers: ids, CertKey: certKey, Profile: f.profile, PreferredChain: f.preferredChain}
	if old != nil {
		if id, err := acme.CertificateID(old); err == nil {
			req.Replaces = id
		}
	} else if f.replaces != "" {
		if chain, _, err := parseCertFile(f.replaces); err == nil {
			if req.Replaces, err = acme.CertificateID(chain[0]); err != nil {
				return usagef("--replaces %s: %v", f.replaces, err)
			}
		} else if _, serr := os.Stat(f.replaces); serr == nil || strings.ContainsAny(f.replaces, "/\\") {
			return usagef("--replaces: %v", err)
		} else {
			req.Replaces = f.replaces
		}
	}

	// Storage first, so that a wrong --storage orders nothing.
	issued := false
	var store storage.Storage
	var trail *audit.Log
	if a.storageURL != "" {
		s, closeStore, err := a.openStorage(ctx)
		if err != nil {
			return err
		}
		defer closeStore()
		store = s
		trail = &audit.Log{Storage: store, Node: cliNode(), Retention: -1}
		defer trail.Close()
	}
	if trail != nil {
		// A run that fails or is interrupted before the certificate is
		// issued leaves a failed decision per name, as a Manager's failed
		// order does (after issuance, the trail has the obtained ones).
		defer func() {
			if err == nil || issued {
				return
			}
			why := err
			if ctx.Err() != nil {
				why = fmt.Errorf("interrupted: %w", err)
			}
			for _, name := range norm {
				trail.OnEvent(autotls.Event{Type: autotls.EventFailed, Name: name, Issuer: directory, Err: why})
			}
		}()
	}
	certFile, keyFile := f.certFile, f.keyFile
	if store == nil || certFile != "" || keyFile != "" {
		if certFile == "" {
			certFile = fileBase(norm[0]) + ".crt"
		}
		if keyFile == "" {
			keyFile = strings.TrimSuffix(certFile, ".crt") + ".key"
			if keyFile == certFile {
				keyFile = certFile + ".key"
			}
		}
	}

	// Every destination is checked before the first ACME request: a
	// certificate issued and then lost still counts against the CA's
	// limits.
	if certFile != "" {
		for _, d := range []struct{ flag, path string }{{"--cert", certFile}, {"--key", keyFile}} {
			if err := checkWritable(d.path); err != nil {
				return fmt.Errorf("cannot write %s %s: %w: nothing was ordered", d.flag, d.path, err)
			}
		}
	}
	if store != nil {
		if err := checkStorage(ctx, store); err != nil {
			return fmt.Errorf("cannot write to --storage %s: %w: nothing was ordered", a.storageURL, err)
		}
	}

	p := a.newProgress()
	var obs []acme.Observer
	obs = append(obs, progressObserver{p})
	if trail != nil {
		obs = append(obs, trail)
	}
	c, _, _, err := a.account(ctx, obs...)
	if err != nil {
		return err
	}
	set, err := f.solverFlags.start(a, p, norm)
	if err != nil {
		return err
	}
	defer set.stop()
	req.Solvers, req.ChallengeTypes = set.solvers, set.types

	res, err := c.Obtain(ctx, req)
	if err != nil {
		var ce *acme.ChallengeError
		var dw *errDNSWait
		if errors.As(err, &dw) {
			return fmt.Errorf("obtaining the certificate: %w", err)
		}
		if errors.As(err, &ce) {
			return fmt.Errorf("the CA could not validate %s via %s: %w: check that the name points at this machine and the port is reachable from the internet", ce.Identifier.Value, ce.Type, err)
		}
		return a.caError("obtaining the certificate", err)
	}
	issued = true
	p.step("done")
	if set.persist != nil {
		set.persist.finish()
	}
	leaf := res.Leaf()
	out := certOutput{
		Names: norm, Serial: hex.EncodeToString(leaf.SerialNumber.Bytes()),
		NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter,
		Issuer: leaf.Issuer.CommonName, Root: res.Chain.TopIssuer(), Directory: directory,
		OrderURL: res.Order.URL, CertificateURL: res.Order.Certificate,
		Replaced: req.Replaces,
	}
	out.ARIID, _ = acme.CertificateID(leaf)

	keyPEM, err := encodeKey(certKey)
	if err != nil {
		return err
	}
	// The certificate is issued: it is written whatever happens to the
	// command's context now (Ctrl-C), within a bound.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	// lost is the error of a write that failed after issuance: the chain
	// and key go to a rescue file the message names.
	lost := func(what string, err error) error {
		if trail != nil {
			for _, name := range norm {
				trail.OnEvent(autotls.Event{Type: autotls.EventNotStored, Name: name, Issuer: directory, Serial: out.Serial, NotAfter: leaf.NotAfter, Err: err})
			}
		}
		msg := fmt.Sprintf("the certificate was issued (serial %s) but %s: %v", out.Serial, what, err)
		if path, rerr := rescue(norm[0], out.Serial, res.Chain.PEM, keyPEM); rerr == nil {
			msg += "; its key and chain are saved in " + path + " (mode 0600)"
			a.wrote(path + " (the issued key and chain)")
		} else {
			msg += "; saving its key and chain elsewhere failed too: " + rerr.Error()
		}
		return errors.New(msg)
	}
	if certFile != "" {
		if err := writeFiles(fileSpec{keyFile, keyPEM, 0o600}, fileSpec{certFile, res.Chain.PEM, 0o644}); err != nil {
			return lost("not saved", err)
		}
		out.CertFile, out.KeyFile = certFile, keyFile
		a.wrote(certFile)
		a.wrote(keyFile)
	}
	if store != nil {
		for _, name := range norm {
			err := autotls.ImportCertificate(wctx, store, autotls.ImportedCertificate{
				Directory: directory, Name: name, ChainPEM: res.Chain.PEM, Key: certKey,
				OrderURL: res.Order.URL, CertificateURL: res.Order.Certificate, AccountURL: c.AccountURL,
				Replace: f.replaceStored,
			})
			if err != nil {
				return lost("not stored under "+name, err)
			}
			out.Stored = append(out.Stored, name)
			a.wrote(name + " in the storage")
			trail.OnEvent(autotls.Event{Type: autotls.EventObtained, Name: name, Issuer: directory, NotAfter: leaf.NotAfter, Serial: out.Serial})
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
