// Package migrate moves certificates that other Go ACME libraries obtained
// into a tlsmint storage, so that an autotls.Manager serves them at once
// and renews them when due, instead of re-ordering every certificate (with
// thousands of names, a re-order runs into the CA's rate limits).
//
// Two layouts are read:
//
//   - Autocert: the folder of a golang.org/x/crypto/acme/autocert DirCache.
//     Each certificate is one file named after its domain (an RSA one ends in
//     "+rsa") holding the private key then the chain, PEM. autocert does not
//     record its CA: the certificates are filed under Options.Directory, Let's
//     Encrypt production by default (autocert's default).
//   - Certmagic: the folder of a github.com/caddyserver/certmagic FileStorage
//     (Caddy's data folder, ~/.local/share/certmagic by default), whose
//     certificates/<issuer>/<site>/ folders hold <site>.crt, <site>.key and
//     <site>.json; the CA's directory URL comes from the metadata, else from
//     the issuer folder's name for the well-known CAs, else Options.Directory.
//
// Each certificate is checked (its key matches, it covers its names, it has
// not expired) and written with autotls.ImportCertificate, once per name it
// is managed under. Nothing is ever written to the source folder, which is
// read through an os.Root: no symbolic link leads outside it. Account keys
// and challenge tokens are not imported (the Manager registers its own
// account); the Report says what was imported and what was skipped, and why.
//
// # Getting started
//
//	store := storage.Dir("/var/lib/tlsmint")
//	rep, err := migrate.Autocert(ctx, "/var/cache/autocert", store, migrate.Options{})
//	if err != nil { ... }
//	for _, s := range rep.Skipped { log.Printf("skipped %s: %s", s.Source, s.Reason) }
//	if len(rep.Failed) > 0 { ... } // storing failed: Reason says how
//	m := &autotls.Manager{Storage: store, Hosts: autotls.HostWhitelist(names...), AcceptTOS: true}
//
// The tlsmint command runs the same as tlsmint import autocert DIR and
// tlsmint import certmagic DIR.
package migrate

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/storage"
)

// MaxFileSize bounds each file read from a source folder.
const MaxFileSize = 1 << 20

// Options configures an import.
type Options struct {
	// Directory is the ACME directory URL the certificates are filed under
	// (a Manager for that CA serves them). Empty means the source's own:
	// the CA certmagic recorded, and Let's Encrypt production
	// (acme.LetsEncryptProduction) for autocert, which records none.
	Directory string
	// Replace overwrites a stored certificate that expires later than the
	// imported one. False keeps it, and the import is reported skipped.
	Replace bool
	// Now is the clock expiry is judged by. Nil means time.Now.
	Now func() time.Time
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

// Item is one certificate of a Report.
type Item struct {
	// Source is the file or folder it was read from, relative to the
	// source folder.
	Source string `json:"source"`
	// Name is the name it is (or would have been) managed under; empty
	// when the file was not a certificate.
	Name string `json:"name,omitempty"`
	// Directory is the CA it is filed under; NotAfter its expiry.
	Directory string    `json:"directory,omitempty"`
	NotAfter  time.Time `json:"not_after,omitzero"`
	// Reason says why it was skipped; empty for an imported one.
	Reason string `json:"reason,omitempty"`
}

// Report says what an import did.
type Report struct {
	Imported []Item `json:"imported"`
	// Skipped are the entries left out by choice: not a certificate,
	// expired, invalid, or a later one already stored.
	Skipped []Item `json:"skipped"`
	// Failed are the certificates that were to be imported but could not
	// be stored (the storage failed); Reason says how. A caller reports
	// an import with any as failed.
	Failed []Item `json:"failed"`
}

func (r *Report) skip(source, name, reason string) {
	r.Skipped = append(r.Skipped, Item{Source: source, Name: name, Reason: reason})
}

// ErrSource is returned (wrapped) when the source folder cannot be read
// at all: missing, not a folder, or not of the expected layout.
var ErrSource = errors.New("migrate: cannot read the source folder")

// openRoot opens the source folder.
func openRoot(dir string) (*os.Root, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSource, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%w: %s is not a folder", ErrSource, dir)
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSource, err)
	}
	return r, nil
}

// readFile reads a regular file of at most MaxFileSize bytes under root.
func readFile(root *os.Root, name string) ([]byte, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("larger than %d bytes", MaxFileSize)
	}
	return b, nil
}

// parsePEM splits PEM data into its first private key and its
// certificates, in order.
func parsePEM(b []byte) (crypto.Signer, []byte, []*x509.Certificate, error) {
	var key crypto.Signer
	var chainPEM []byte
	var chain []*x509.Certificate
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			break
		}
		switch {
		case block.Type == "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("parsing a certificate: %w", err)
			}
			chain = append(chain, c)
			chainPEM = append(chainPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: block.Bytes})...)
		case strings.HasSuffix(block.Type, "PRIVATE KEY") && key == nil:
			k, err := acme.ParsePrivateKey(block)
			if err != nil {
				return nil, nil, nil, err
			}
			key = k
		}
	}
	return key, chainPEM, chain, nil
}

// importOne checks and imports one certificate under each of names.
func importOne(ctx context.Context, dst storage.Storage, rep *Report, opts Options, source, directory string, names []string, key crypto.Signer, chainPEM []byte, chain []*x509.Certificate, account string) {
	if len(chain) == 0 {
		rep.skip(source, "", "no certificate in it")
		return
	}
	if key == nil {
		rep.skip(source, "", "no private key in it")
		return
	}
	leaf := chain[0]
	if now := opts.now(); !now.Before(leaf.NotAfter) {
		for _, n := range names {
			rep.Skipped = append(rep.Skipped, Item{Source: source, Name: n, Directory: directory, NotAfter: leaf.NotAfter, Reason: "expired on " + leaf.NotAfter.UTC().Format(time.RFC3339)})
		}
		return
	}
	for _, n := range names {
		err := autotls.ImportCertificate(ctx, dst, autotls.ImportedCertificate{
			Directory: directory, Name: n, ChainPEM: chainPEM, Key: key, AccountURL: account, Replace: opts.Replace,
		})
		it := Item{Source: source, Name: n, Directory: directory, NotAfter: leaf.NotAfter}
		switch {
		case err == nil:
			rep.Imported = append(rep.Imported, it)
		case errors.Is(err, autotls.ErrNewerStored):
			it.Reason = "a certificate that expires no earlier is already stored"
			rep.Skipped = append(rep.Skipped, it)
		case errors.Is(err, autotls.ErrInvalidImport):
			it.Reason = strings.TrimPrefix(err.Error(), autotls.ErrInvalidImport.Error()+": ")
			rep.Skipped = append(rep.Skipped, it)
		default:
			// Storage failed: not a choice, a failure to report.
			it.Reason = "storing failed: " + err.Error()
			rep.Failed = append(rep.Failed, it)
		}
	}
}

// Autocert imports the certificates of an autocert DirCache folder into dst
// and reports each file. Only a folder that cannot be read fails the call
// (ErrSource); every file that is not imported is reported in
// Report.Skipped with the reason, or in Report.Failed when storing it failed.
func Autocert(ctx context.Context, dir string, dst storage.Storage, opts Options) (*Report, error) {
	root, err := openRoot(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	ents, err := fs.ReadDir(root.FS(), ".")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSource, err)
	}
	directory := opts.Directory
	if directory == "" {
		directory = acme.LetsEncryptProduction
	}
	rep := &Report{Imported: []Item{}, Skipped: []Item{}, Failed: []Item{}}
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		name := e.Name()
		switch {
		case e.IsDir():
			continue
		case name == "acme_account+key" || name == "acme_account.key":
			rep.skip(name, "", "autocert's account key: the Manager registers its own account")
			continue
		case strings.HasSuffix(name, "+http-01"):
			rep.skip(name, "", "an http-01 challenge token")
			continue
		case strings.HasSuffix(name, "+token"):
			rep.skip(name, "", "a tls-alpn-01 challenge certificate")
			continue
		case strings.HasPrefix(name, "."):
			continue
		}
		domain := strings.TrimSuffix(name, "+rsa")
		b, err := readFile(root, name)
		if err != nil {
			rep.skip(name, domain, "unreadable: "+err.Error())
			continue
		}
		key, chainPEM, chain, err := parsePEM(b)
		if err != nil {
			rep.skip(name, domain, err.Error())
			continue
		}
		importOne(ctx, dst, rep, opts, name, directory, []string{domain}, key, chainPEM, chain, "")
	}
	return rep, nil
}
