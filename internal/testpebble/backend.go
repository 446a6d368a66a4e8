package testpebble

import (
	"crypto/x509"
	"fmt"
	"net/http"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
)

// backend is one incarnation of Pebble: its database and the CA, VA and WFE
// built on it. A backend is never modified after it is built (Pebble's
// objects guard their own state); [CA.Reset] replaces the whole of it, so a
// request that started on the old one finishes there.
type backend struct {
	db         *db.MemoryStore
	ca         *ca.CAImpl
	va         *va.VAImpl
	wfe        *wfe.WebFrontEndImpl
	acme       http.Handler // the WFE's ACME paths
	management http.Handler // the WFE's management paths
	reuse      *noReuse     // with Options.AuthzReusePercent zero
}

// serveACME serves an ACME request.
func (b *backend) serveACME(w http.ResponseWriter, r *http.Request) {
	if b.reuse != nil {
		b.reuse.serve(b.acme, w, r)
		return
	}
	b.acme.ServeHTTP(w, r)
}

// build constructs the first backend, with fresh roots and intermediates,
// and records the roots.
func (c *CA) build() error {
	profiles := make(map[string]ca.Profile)
	for name, validity := range c.opts.Profiles {
		profiles[name] = ca.Profile{
			Description:    "testpebble profile " + name,
			ValidityPeriod: uint64(validity / time.Second),
		}
	}
	if len(profiles) == 0 {
		profiles["default"] = ca.Profile{Description: "The default profile"}
	}
	chainLength := c.opts.ChainLength
	if chainLength == 0 {
		chainLength = 1
	}
	keyAlg := c.opts.KeyAlgorithm
	if keyAlg == "" {
		keyAlg = "ecdsa"
	}
	b, err := c.newBackend(func(store *db.MemoryStore) (*ca.CAImpl, error) {
		return ca.New(c.logger, store, "", keyAlg, c.opts.AlternateRoots, chainLength, profiles), nil
	})
	if err != nil {
		return err
	}
	c.cur.Store(b)

	c.rootPool = x509.NewCertPool()
	for i := range b.ca.GetNumberOfRootCerts() {
		root := b.ca.GetRootCert(i)
		if root == nil || root.Cert == nil {
			return fmt.Errorf("testpebble: pebble has no root %d", i)
		}
		c.roots = append(c.roots, root.Cert)
		c.rootPool.AddCert(root.Cert)
	}
	return nil
}

// newBackend builds a backend on a new database holding the CA's EAB keys
// and blocked domains: the CA that newCA makes on that database, then a VA
// and a WFE configured by the CA's options. The caller holds c.mu or has not
// published c yet.
func (c *CA) newBackend(newCA func(store *db.MemoryStore) (*ca.CAImpl, error)) (b *backend, err error) {
	store := db.NewMemoryStore()
	for kid, key := range c.eab {
		if err := store.AddExternalAccountKeyByID(kid, key); err != nil {
			return nil, fmt.Errorf("testpebble: EAB key %q: %w", kid, err)
		}
	}
	for _, d := range c.opts.BlockedDomains {
		if err := store.AddBlockedDomain(d); err != nil {
			return nil, fmt.Errorf("testpebble: blocked domain %q: %w", d, err)
		}
	}

	// Pebble's constructors panic on key generation failures.
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("testpebble: pebble: %v", r)
		}
	}()
	// The VA and WFE constructors read their settings from the environment.
	err = withEnv(pebbleEnv(&c.opts), func() error {
		caImpl, err := newCA(store)
		if err != nil {
			return err
		}
		v := va.New(c.logger, c.httpPort, c.tlsPort, c.opts.Strict, c.dns.Addr(), store)
		w := wfe.New(c.logger, store, v, caImpl, []string{"pebble.letsencrypt.org"},
			c.opts.Strict, c.opts.RequireEAB, c.opts.RetryAfterAuthz, c.opts.RetryAfterOrder)
		b = &backend{db: store, ca: caImpl, va: v, wfe: &w, acme: w.Handler(), management: w.ManagementHandler()}
		if c.opts.AuthzReusePercent == 0 {
			b.reuse = &noReuse{db: store}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("testpebble: build pebble: %w", err)
	}
	return b, nil
}

// nonce returns a fresh nonce that b's WFE accepts, from a HEAD request to
// newNonce served in-process (so it is not counted), or "" if the WFE gave
// none.
func (b *backend) nonce() string {
	req, err := http.NewRequest(http.MethodHead, "/nonce-plz", nil)
	if err != nil {
		return ""
	}
	req.Header.Set("User-Agent", "testpebble")
	rec := headerRecorder{h: make(http.Header)}
	b.acme.ServeHTTP(&rec, req)
	return rec.h.Get("Replay-Nonce")
}

// headerRecorder is an http.ResponseWriter that keeps the header and
// discards the rest.
type headerRecorder struct{ h http.Header }

func (r *headerRecorder) Header() http.Header         { return r.h }
func (r *headerRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *headerRecorder) WriteHeader(int)             {}
