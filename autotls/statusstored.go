package autotls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync"

	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/storage"
)

// storedListWorkers is how many stored certificates Manager.Certificates
// reads at once: enough to hide a database's round trips, few enough to
// leave a storage shared with serving nodes its capacity.
const storedListWorkers = 8

// storedJob is one stored value to describe.
type storedJob struct {
	iss  *issuer
	name string
}

// storedInfos adds to infos the certificates stored for each issuer that
// infos does not hold yet (those in memory are in it already): one List
// per issuer, then loadStoredInfos. It returns the List failures, or the
// context's error when ctx ends.
func (m *Manager) storedInfos(ctx context.Context, store storage.Storage, infos map[string]*record.Certificate) ([]error, error) {
	var (
		errs []error
		jobs []storedJob
	)
	for _, iss := range m.st.issuers {
		prefix := "certificates/" + iss.key + "/"
		keys, err := store.List(ctx, prefix)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			errs = append(errs, fmt.Errorf("autotls: listing stored certificates: %w", err))
		}
		for _, k := range keys {
			name := nameFromKey(strings.TrimSuffix(strings.TrimPrefix(k, prefix), ".json"))
			if infos[name] == nil {
				jobs = append(jobs, storedJob{iss, name})
			}
		}
	}
	got, err := m.loadStoredInfos(ctx, store, jobs)
	if err != nil {
		return nil, err
	}
	for name, info := range got {
		infos[name] = info
	}
	return errs, nil
}

// loadStoredInfos describes the stored values of jobs: one Load each,
// storedListWorkers at a time. A name stored for several issuers is
// described by the certificate that expires last, as loadStoredOther
// would serve it; a name with no readable value by the first failure to
// read it. Values deleted meanwhile are left out. It fails only when ctx
// ends.
func (m *Manager) loadStoredInfos(ctx context.Context, store storage.Storage, jobs []storedJob) (map[string]*record.Certificate, error) {
	var (
		mu     sync.Mutex
		infos  = map[string]*record.Certificate{}
		failed = map[string]*record.Certificate{} // names with no readable value yet
		next   = make(chan storedJob)
		wg     sync.WaitGroup
	)
	for range min(storedListWorkers, len(jobs)) {
		wg.Go(func() {
			for j := range next {
				info, err := m.storedInfo(ctx, store, j.iss, j.name)
				mu.Lock()
				switch {
				case err == nil:
					if cur := infos[j.name]; cur == nil || info.NotAfter.After(cur.NotAfter) {
						infos[j.name] = info
						delete(failed, j.name)
					}
				case errors.Is(err, fs.ErrNotExist) || ctx.Err() != nil:
					// Deleted since the List, or the call is over.
				case infos[j.name] == nil && failed[j.name] == nil:
					failed[j.name] = &record.Certificate{Name: j.name, Issuer: j.iss.url, LastError: err.Error()}
				}
				mu.Unlock()
			}
		})
	}
	for _, j := range jobs {
		if ctx.Err() != nil {
			break
		}
		next <- j
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for name, info := range failed {
		infos[name] = info
	}
	return infos, nil
}

// storedInfo describes the certificate stored for name at iss, with the
// failed renewal recorded with it: one storage read. Of the value only the
// leaf is parsed — not the private key, which a listing does not need:
// format 2's checksum covers the key, and serving the certificate checks
// that it matches.
func (m *Manager) storedInfo(ctx context.Context, store storage.Storage, iss *issuer, name string) (*record.Certificate, error) {
	b, err := store.Load(ctx, certKey(iss, name))
	if err != nil {
		return nil, err
	}
	s, err := decodeStored(b)
	if err != nil {
		return nil, err
	}
	if len(s.Chain) == 0 || len(s.Key) == 0 {
		return nil, fmt.Errorf("%w: no certificate or no key", errCorrupt)
	}
	leaf, err := x509.ParseCertificate(s.Chain[0])
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	if !covers(leaf, name) {
		return nil, fmt.Errorf("%w: certificate does not cover %q", errCorrupt, name)
	}
	e := &entry{entryData: entryData{
		iss:        iss,
		name:       name,
		cert:       &tls.Certificate{Leaf: leaf},
		notBefore:  leaf.NotBefore,
		notAfter:   leaf.NotAfter,
		ari:        s.ARI,
		floor:      s.RenewFloor,
		ariRenewed: s.ARIRenewed,
	}}
	planEntry(e, m.now())
	info := m.entryInfo(e)
	if f := s.LastFailure; f != nil && f.Error != "" {
		info.LastError, info.LastErrorAt = f.Error, f.At
	}
	return info, nil
}
