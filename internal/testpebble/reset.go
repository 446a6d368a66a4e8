package testpebble

import (
	"errors"
	"fmt"
	"reflect"
	"unsafe"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/core"
	"github.com/letsencrypt/pebble/v2/db"
)

// Reset makes the CA forget every account, order, authorization, challenge
// and certificate, as a CA whose database was lost would: a request signed
// by an account registered before gets accountDoesNotExist (after one
// badNonce, since the nonces handed out before are forgotten too),
// registering the same key again creates a new account, and the
// certificates issued before are unknown to revocation, ARI and
// [CA.Revoke]; renewal information set with [CA.SetRenewalInfo] is gone.
//
// Everything else stays: the directory URL and ports, the HTTPS server's
// certificate, the roots and intermediates (certificates issued after Reset
// chain to the same [CA.Roots]), the options, every EAB key (those added by
// [CA.AddEABKey] included), the DNS server's records, the request counters
// and log, and the faults set by [CA.SetDown] and [CA.RateLimit].
//
// A request being answered during Reset finishes on the old database, and
// so does any validation or issuance it started: its results are lost.
// Each Reset leaves one more goroutine of Pebble's validation authority
// behind, as [CA.Close] does.
//
// Pebble has no way to keep its issuers with a new database: Reset sets the
// database of a copy of Pebble's CA through reflection, and returns an error
// if a Pebble release no longer has that field.
func (c *CA) Reset() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	old := c.cur.Load()
	b, err := c.newBackend(func(store *db.MemoryStore) (*ca.CAImpl, error) {
		fresh, err := rebindCA(old.ca, old.db, store)
		if err != nil {
			return nil, err
		}
		// Pebble's CA adds its issuers' certificates to its database when
		// it creates them; those beyond the first intermediate of each
		// chain cannot be reached and are left out.
		for i := range fresh.GetNumberOfRootCerts() {
			for _, cert := range []*core.Certificate{fresh.GetRootCert(i), fresh.GetIntermediateCert(i)} {
				if _, err := store.AddCertificate(cert); err != nil {
					return nil, fmt.Errorf("issuer certificate %s: %w", cert.ID, err)
				}
			}
		}
		return fresh, nil
	})
	if err != nil {
		return fmt.Errorf("testpebble: reset: %w", err)
	}
	c.cur.Store(b)
	return nil
}

// rebindCA returns a copy of old, Pebble's CA with its issuers and
// profiles, that keeps what it issues in store instead of oldStore.
func rebindCA(old *ca.CAImpl, oldStore, store *db.MemoryStore) (*ca.CAImpl, error) {
	fresh := new(ca.CAImpl)
	*fresh = *old // nothing in it is modified after ca.New
	f := reflect.ValueOf(fresh).Elem().FieldByName("db")
	if !f.IsValid() || f.Type() != reflect.TypeFor[*db.MemoryStore]() {
		return nil, errors.New("this Pebble's ca.CAImpl has no field db of type *db.MemoryStore")
	}
	field := reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem()
	if field.Interface() != oldStore {
		return nil, errors.New("this Pebble's ca.CAImpl.db is not the CA's database")
	}
	field.Set(reflect.ValueOf(store))
	return fresh, nil
}
