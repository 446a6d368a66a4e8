package relay

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// The index of current certificates: per tenant and set of names, the
// newest certificate issued, with what a status page shows of it, so
// that Server.Certificates reads one small record per row instead of
// every certificate ever issued.
const (
	keyCurrent      = keyRoot + "current/"      // <tenant>/<digest of the names>: currentRecord
	keyCurrentBuilt = keyRoot + "current-built" // marker: certificates stored before the index are in it
)

// A currentRecord is the newest certificate of one tenant and name set.
type currentRecord struct {
	Cert      string    `json:"cert"`
	Issued    time.Time `json:"issued"`
	Names     []string  `json:"names"`
	Tenant    string    `json:"tenant"`
	Upstream  string    `json:"upstream"`
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"not_before"`
	NotAfter  time.Time `json:"not_after"`
	Revoked   bool      `json:"revoked,omitempty"`
}

// currentKey is the index key of a certificate's tenant and names.
func currentKey(r *certRecord) string {
	h := sha256.Sum256([]byte(strings.Join(sortedNames(r.Identifiers), "\x00")))
	return keyCurrent + tenantKey(r.Tenant) + "/" + hex.EncodeToString(h[:16])
}

// olderThan reports whether r is newer than the indexed certificate.
func (cur *currentRecord) olderThan(r *certRecord) bool {
	return r.Issued.After(cur.Issued) || (r.Issued.Equal(cur.Issued) && r.ID > cur.Cert)
}

// noteCurrent puts r in the index of current certificates when it is the
// newest of its tenant and names, or when it is the indexed one (a
// revocation).
func (s *Server) noteCurrent(ctx context.Context, r *certRecord) error {
	key, unlock, err := s.lockCurrent(ctx, r)
	if err != nil {
		return err
	}
	defer unlock()
	var cur currentRecord
	if err := s.load(ctx, key, &cur); err != nil && !isNotFound(err) {
		return err
	} else if err == nil && cur.Cert != r.ID && !cur.olderThan(r) {
		return nil
	}
	rec := currentRecord{
		Cert: r.ID, Issued: r.Issued, Names: names(r.Identifiers), Tenant: r.Tenant, Upstream: r.Upstream,
		NotBefore: r.NotBefore, NotAfter: r.NotAfter, Revoked: r.Revoked,
	}
	if leaf, err := r.leaf(); err == nil {
		rec.Serial = hex.EncodeToString(leaf.SerialNumber.Bytes())
	}
	return s.save(ctx, key, &rec)
}

// lockCurrent takes the lock of the index entry for r's tenant and names,
// and returns the entry's key; the caller unlocks.
func (s *Server) lockCurrent(ctx context.Context, r *certRecord) (string, func(), error) {
	key := currentKey(r)
	unlock, err := s.lock(ctx, key[len(keyRoot):])
	return key, unlock, err
}

// dropCurrent removes r from the index when it is the indexed one.
func (s *Server) dropCurrent(ctx context.Context, r *certRecord) error {
	key, unlock, err := s.lockCurrent(ctx, r)
	if err != nil {
		return err
	}
	defer unlock()
	var cur currentRecord
	if err := s.load(ctx, key, &cur); err != nil {
		if isNotFound(err) {
			return nil
		}
		return err
	}
	if cur.Cert != r.ID {
		return nil
	}
	return s.Storage.Delete(ctx, key)
}

// buildCurrent fills the index from the certificates stored before it
// existed, once per storage (a marker says it is done), in batches.
func (s *Server) buildCurrent(ctx context.Context) error {
	if _, err := s.Storage.Stat(ctx, keyCurrentBuilt); err == nil {
		return nil
	} else if !isNotFound(err) {
		return err
	}
	unlock, err := s.lock(ctx, "current-build")
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := s.Storage.Stat(ctx, keyCurrentBuilt); err == nil {
		return nil
	}
	keys, err := s.Storage.List(ctx, keyCerts)
	if err != nil {
		return fmt.Errorf("relay: listing certificates: %w", err)
	}
	for _, k := range keys {
		if !validID(strings.TrimPrefix(k, keyCerts)) {
			continue
		}
		r := new(certRecord)
		if err := s.load(ctx, k, r); err != nil {
			if isNotFound(err) {
				continue
			}
			return err
		}
		if err := s.noteCurrent(ctx, r); err != nil {
			return err
		}
	}
	return s.Storage.Store(ctx, keyCurrentBuilt, []byte(s.now().UTC().Format(time.RFC3339)))
}
