package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/tlsmint/tlsmint/acme"
)

// maxFileSize bounds every file the command reads: keys, certificates,
// roots, EAB secrets.
const maxFileSize = 1 << 20

// readSmallFile reads a file of at most maxFileSize bytes. A named pipe
// or a device is read too (a secret may come from a shell's <(…)), but
// opening one does not wait for a writer: with nothing written it is an
// error, not a command that hangs.
func readSmallFile(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|openNonblock, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("%s is a folder, not a file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxFileSize)
	}
	if len(b) == 0 && !fi.Mode().IsRegular() {
		what := "a special file"
		switch t := fi.Mode().Type(); {
		case t&fs.ModeNamedPipe != 0:
			what = "a named pipe"
		case t&fs.ModeDevice != 0:
			what = "a device"
		case t&fs.ModeSocket != 0:
			what = "a socket"
		}
		return nil, fmt.Errorf("%s is not a regular file but %s, and nothing was written to it", path, what)
	}
	return b, nil
}

// pendingFile is a file written and synced under a temporary name next to
// its final path, not yet in place.
type pendingFile struct {
	tmp, path string
}

// stageFile writes data to a temporary file beside path (mode perm,
// synced), creating missing parent folders with mode 0700.
func stageFile(path string, data []byte, perm os.FileMode) (*pendingFile, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return nil, err
	}
	tmp := f.Name()
	fail := func(err error) (*pendingFile, error) {
		f.Close()
		os.Remove(tmp)
		return nil, err
	}
	if err := f.Chmod(perm); err != nil {
		return fail(err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return nil, err
	}
	return &pendingFile{tmp: tmp, path: path}, nil
}

// commit renames the file into place, replacing what was there.
func (p *pendingFile) commit() error {
	if err := os.Rename(p.tmp, p.path); err != nil {
		os.Remove(p.tmp)
		return err
	}
	syncDir(filepath.Dir(p.path))
	return nil
}

// commitNew links the file into place only if nothing is there yet.
func (p *pendingFile) commitNew() error {
	defer os.Remove(p.tmp)
	if err := os.Link(p.tmp, p.path); err != nil {
		return err
	}
	syncDir(filepath.Dir(p.path))
	return nil
}

// discard removes the staged file.
func (p *pendingFile) discard() { os.Remove(p.tmp) }

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// writeFiles writes every file atomically: all are staged first, so a
// failure leaves every old file as it was; then each is renamed into
// place.
func writeFiles(files ...fileSpec) error {
	var staged []*pendingFile
	for _, f := range files {
		p, err := stageFile(f.path, f.data, f.perm)
		if err != nil {
			for _, s := range staged {
				s.discard()
			}
			return fmt.Errorf("writing %s: %w", f.path, err)
		}
		staged = append(staged, p)
	}
	for i, p := range staged {
		if err := p.commit(); err != nil {
			for _, s := range staged[i+1:] {
				s.discard()
			}
			return fmt.Errorf("writing %s: %w", p.path, err)
		}
	}
	return nil
}

type fileSpec struct {
	path string
	data []byte
	perm os.FileMode
}

// Key types of --key-type.
var keyTypes = []string{"p256", "p384", "rsa2048", "rsa4096"}

// newKey generates a key of type typ.
func newKey(typ string) (crypto.Signer, error) {
	switch strings.ToLower(typ) {
	case "", "p256", "ecdsa":
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "p384":
		return ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case "rsa2048":
		return rsa.GenerateKey(rand.Reader, 2048)
	case "rsa4096":
		return rsa.GenerateKey(rand.Reader, 4096)
	}
	return nil, usagef("--key-type %q: want one of %s", typ, strings.Join(keyTypes, ", "))
}

// encodeKey returns key as PKCS#8 PEM.
func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// errNoKey marks a key file that does not exist.
var errNoKey = errors.New("no key file")

// parseKey reads the first private key of a PEM file: PKCS#8, SEC 1 (EC
// PRIVATE KEY) or PKCS#1 (RSA PRIVATE KEY).
func parseKey(b []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, b = pem.Decode(b)
		if block == nil {
			return nil, errors.New("no PEM private key in it")
		}
		if !strings.Contains(block.Type, "PRIVATE KEY") {
			continue
		}
		return acme.ParsePrivateKey(block)
	}
}

// loadKey reads a key file; a missing file is errNoKey (wrapped).
func loadKey(path string) (crypto.Signer, error) {
	b, err := readSmallFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", errNoKey, path)
	}
	if err != nil {
		return nil, fmt.Errorf("reading key: %w", err)
	}
	k, err := parseKey(b)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return k, nil
}

// parseCertFile reads a PEM chain, leaf first, as acme reads a CA's
// (see [acme.ParseCertificateChain]: certificates only).
func parseCertFile(path string) ([]*x509.Certificate, []byte, error) {
	b, err := readSmallFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("reading certificate: %w", err)
	}
	chain, err := acme.ParseCertificateChain(b)
	if err != nil {
		return nil, nil, fmt.Errorf("certificate file %s: %w", path, err)
	}
	return chain, b, nil
}
