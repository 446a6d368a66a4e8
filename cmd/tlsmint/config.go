package main

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/durfmt"
	"github.com/tlsmint/tlsmint/storage"
	"github.com/tlsmint/tlsmint/storage/postgres"
)

// caNames are the short names --ca accepts.
var caNames = map[string]string{
	"letsencrypt":         acme.LetsEncryptProduction,
	"letsencrypt-staging": acme.LetsEncryptStaging,
	"zerossl":             autotls.ZeroSSLDirectory,
	"google":              autotls.GoogleTrustServicesDirectory,
}

// directory returns the directory URL --ca names.
func (a *app) directory() (string, error) {
	if u, ok := caNames[strings.ToLower(a.ca)]; ok {
		return u, nil
	}
	u, err := url.Parse(a.ca)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "", usagef("--ca %q: want letsencrypt, letsencrypt-staging, zerossl, google or an https:// directory URL", a.ca)
	}
	return a.ca, nil
}

// roots returns the pool of --ca-roots, nil for the system's.
func (a *app) roots() (*x509.CertPool, error) {
	if a.caRoots == "" {
		return nil, nil
	}
	b, err := readSmallFile(a.caRoots)
	if err != nil {
		return nil, fmt.Errorf("reading --ca-roots: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, usagef("--ca-roots %s: no PEM certificate in it", a.caRoots)
	}
	return pool, nil
}

// checkCA checks --ca and --ca-roots before anything else is read.
func (a *app) checkCA() error {
	if _, err := a.directory(); err != nil {
		return err
	}
	_, err := a.roots()
	return err
}

// client returns an ACME client for --ca with key (nil for calls that
// need none), reporting exchanges to -v and to obs.
func (a *app) client(key crypto.Signer, obs ...acme.Observer) (*acme.Client, error) {
	dir, err := a.directory()
	if err != nil {
		return nil, err
	}
	roots, err := a.roots()
	if err != nil {
		return nil, err
	}
	timeout := a.requestTimeout
	if timeout <= 0 {
		timeout = defaultRequestTimeout
	}
	// The bound of each request is caTransport's, dial and handshake
	// included, and its end is not a net.Error timeout, which the acme
	// client would repeat: a CA that does not answer costs one
	// --request-timeout, not four.
	hc := acme.NewHTTPClient(roots)
	hc.Timeout = 0
	if tr, ok := hc.Transport.(*http.Transport); ok {
		tr.ResponseHeaderTimeout, tr.TLSHandshakeTimeout = 0, 0
	}
	hc.Transport = &caTransport{rt: hc.Transport, p: a.newProgress(), dir: dir, timeout: timeout}
	c := &acme.Client{DirectoryURL: dir, HTTPClient: hc, UserAgent: "tlsmint-cli"}
	if key != nil {
		c.Key = key
	}
	var o multiObserver
	if a.verbose {
		o = append(o, &verboseObserver{w: a.stderr})
	}
	for _, x := range obs {
		if x != nil {
			o = append(o, x)
		}
	}
	if len(o) > 0 {
		c.Observer = o
	}
	return c, nil
}

// caTransport bounds each request to the CA by --request-timeout, from
// the dial to the end of the body, and tells --progress when the command
// first contacts the CA and when an answer is slow to come.
type caTransport struct {
	rt      http.RoundTripper
	p       *progress
	dir     string
	timeout time.Duration
	once    sync.Once
}

// errRequestTimeout is the cause of a request's end at --request-timeout.
var errRequestTimeout = errors.New("no answer within --request-timeout")

// requestTimeoutError is a request ended by --request-timeout. It is no
// net.Error, so that the acme client does not repeat the request.
type requestTimeoutError struct {
	host    string
	timeout time.Duration
}

func (e *requestTimeoutError) Error() string {
	return fmt.Sprintf("%s did not answer within %s (--request-timeout)", e.host, durfmt.Format(e.timeout))
}

func (t *caTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.once.Do(func() { t.p.step("contacting the CA at %s", t.dir) })
	ctx, cancel := context.WithCancelCause(req.Context())
	deadline := time.AfterFunc(t.timeout, func() { cancel(errRequestTimeout) })
	slow := min(5*time.Second, t.timeout/3)
	notice := time.AfterFunc(slow, func() {
		t.p.step("still waiting for an answer from the CA at %s (%s so far; --request-timeout %s)", req.URL.Host, durfmt.Format(slow), durfmt.Format(t.timeout))
	})
	stop := func() { notice.Stop(); deadline.Stop(); cancel(nil) }
	resp, err := t.rt.RoundTrip(req.WithContext(ctx))
	if err != nil {
		timedOut := context.Cause(ctx) == errRequestTimeout
		stop()
		if timedOut {
			return nil, &requestTimeoutError{host: req.URL.Host, timeout: t.timeout}
		}
		return nil, err
	}
	notice.Stop()
	resp.Body = &timedBody{ReadCloser: resp.Body, ctx: ctx, stop: stop, host: req.URL.Host, timeout: t.timeout}
	return resp, nil
}

// timedBody is a response body read under its request's --request-timeout;
// closing it ends the bound.
type timedBody struct {
	io.ReadCloser
	ctx     context.Context
	stop    func()
	host    string
	timeout time.Duration
}

func (b *timedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && context.Cause(b.ctx) == errRequestTimeout {
		err = &requestTimeoutError{host: b.host, timeout: b.timeout}
	}
	return n, err
}

func (b *timedBody) Close() error {
	err := b.ReadCloser.Close()
	b.stop()
	return err
}

// defaultAccountKey is where the account key of directory lives when
// --account-key is not given: one file per CA under the user's config
// folder.
func defaultAccountKey(directory string) (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", usagef("no --account-key and no user config folder (%v): pass --account-key FILE", err)
	}
	u, _ := url.Parse(directory)
	seg := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-':
			return r
		}
		return '-'
	}, u.Host+strings.TrimSuffix(u.Path, "/"))
	return filepath.Join(dir, "tlsmint", "accounts", seg, "account.key"), nil
}

// accountKeyPath returns --account-key or the default for --ca.
func (a *app) accountKeyPath() (string, error) {
	if a.accountKey != "" {
		return a.accountKey, nil
	}
	dir, err := a.directory()
	if err != nil {
		return "", err
	}
	return defaultAccountKey(dir)
}

// openStorage opens --storage: a folder that must exist, or a PostgreSQL
// DSN. The caller closes it.
func (a *app) openStorage(ctx context.Context) (storage.Storage, func(), error) {
	s := a.storageURL
	if s == "" {
		return nil, nil, usagef("no storage: pass --storage DIR or --storage postgres://… (or set TLSMINT_STORAGE)")
	}
	if strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://") {
		pg, err := postgres.New(ctx, postgres.Config{DSN: s})
		if err != nil {
			return nil, nil, fmt.Errorf("opening PostgreSQL storage: %w", err)
		}
		return pg, func() { pg.Close() }, nil
	}
	fi, err := os.Stat(s)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil, usagef("storage folder %s does not exist: check --storage, or create it with mkdir -m 700 %s", s, s)
	case err != nil:
		return nil, nil, fmt.Errorf("storage folder: %w", err)
	case !fi.IsDir():
		return nil, nil, usagef("--storage %s is not a folder", s)
	}
	fsStore := storage.Dir(s)
	return fsStore, func() { fsStore.Close() }, nil
}
