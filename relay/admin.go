package relay

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/record"
)

// An EABKey describes an External Account Binding key of a tenant,
// without its MAC key.
type EABKey struct {
	KeyID   string    `json:"key_id"`
	Tenant  string    `json:"tenant"`
	Created time.Time `json:"created"`
}

// PutTenant creates a tenant or replaces its policy.
func (s *Server) PutTenant(ctx context.Context, t Tenant) error {
	s.init()
	if s.initErr != nil {
		return s.initErr
	}
	if !validTenantID(t.ID) {
		return fmt.Errorf("%w: ID %q (use 1 to 64 of a-z, 0-9, '-', '_', '.')", ErrInvalidTenant, clip(t.ID, 64))
	}
	if err := t.Policy.check(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidTenant, err)
	}
	unlock, err := s.lock(ctx, "tenant/"+t.ID)
	if err != nil {
		return err
	}
	defer unlock()
	if old, err := s.loadTenant(ctx, t.ID); err == nil {
		t.Created = old.Created
	} else if !errors.Is(err, ErrNoTenant) {
		return err
	}
	if t.Created.IsZero() {
		t.Created = s.now().UTC()
	}
	return s.save(ctx, keyTenants+t.ID, t)
}

// Tenant returns a tenant, or an error matching ErrNoTenant.
func (s *Server) Tenant(ctx context.Context, id string) (*Tenant, error) {
	s.init()
	if s.initErr != nil {
		return nil, s.initErr
	}
	return s.loadTenant(ctx, id)
}

// Tenants returns every tenant, sorted by ID.
func (s *Server) Tenants(ctx context.Context) ([]Tenant, error) {
	s.init()
	if s.initErr != nil {
		return nil, s.initErr
	}
	keys, err := s.Storage.List(ctx, keyTenants)
	if err != nil {
		return nil, err
	}
	out := []Tenant{}
	for _, k := range keys {
		t, err := s.loadTenant(ctx, strings.TrimPrefix(k, keyTenants))
		if err != nil {
			continue
		}
		out = append(out, *t)
	}
	return out, nil
}

// DeleteTenant deletes a tenant and its EAB keys. Its accounts are refused
// from then on.
func (s *Server) DeleteTenant(ctx context.Context, id string) error {
	if _, err := s.Tenant(ctx, id); err != nil {
		return err
	}
	keys, err := s.EABKeys(ctx, id)
	if err != nil {
		return err
	}
	for _, k := range keys {
		if err := s.Storage.Delete(ctx, keyEAB+k.KeyID); err != nil {
			return err
		}
	}
	return s.Storage.Delete(ctx, keyTenants+id)
}

// NewEABKey mints an External Account Binding key for a tenant: an
// account registered with it belongs to the tenant. The MAC key is in
// the result only; it is stored (0600) but never shown again. A key may
// register several accounts until it is deleted.
func (s *Server) NewEABKey(ctx context.Context, tenant string) (*acme.ExternalAccountBinding, error) {
	if _, err := s.Tenant(ctx, tenant); err != nil {
		return nil, err
	}
	mac := make([]byte, 32)
	rand.Read(mac)
	rec := eabRecord{KeyID: newID(), Tenant: tenant, MAC: mac, Created: s.now().UTC()}
	if err := s.save(ctx, keyEAB+rec.KeyID, rec); err != nil {
		return nil, err
	}
	return &acme.ExternalAccountBinding{KeyID: rec.KeyID, HMACKey: mac}, nil
}

// EABKeys lists the EAB keys of a tenant (without their MAC keys).
func (s *Server) EABKeys(ctx context.Context, tenant string) ([]EABKey, error) {
	s.init()
	if s.initErr != nil {
		return nil, s.initErr
	}
	keys, err := s.Storage.List(ctx, keyEAB)
	if err != nil {
		return nil, err
	}
	out := []EABKey{}
	for _, k := range keys {
		var rec eabRecord
		if err := s.load(ctx, k, &rec); err != nil || rec.Tenant != tenant {
			continue
		}
		out = append(out, EABKey{KeyID: rec.KeyID, Tenant: rec.Tenant, Created: rec.Created})
	}
	return out, nil
}

// ErrNoEABKey is returned (wrapped) for an EAB key that does not exist.
var ErrNoEABKey = errors.New("relay: no such EAB key")

// DeleteEABKey deletes an EAB key: no new account can register with it.
// Accounts registered with it stay.
func (s *Server) DeleteEABKey(ctx context.Context, keyID string) error {
	s.init()
	if s.initErr != nil {
		return s.initErr
	}
	if !validID(keyID) {
		return fmt.Errorf("%w %q", ErrNoEABKey, clip(keyID, 64))
	}
	if _, err := s.Storage.Stat(ctx, keyEAB+keyID); err != nil {
		if isNotFound(err) {
			return fmt.Errorf("%w %q", ErrNoEABKey, keyID)
		}
		return err
	}
	return s.Storage.Delete(ctx, keyEAB+keyID)
}

// AdminHandler returns the administration API, authenticated by
// "Authorization: Bearer <AdminToken>" (every request is refused while
// AdminToken is empty) and limited to AdminSources when set. Mount it at
// its own root (http.StripPrefix for a path), never on the public ACME
// listener. JSON in and out:
//
//	GET    /tenants                list the tenants
//	GET    /tenants/{id}           one tenant
//	PUT    /tenants/{id}           create or replace: the body is a Policy
//	DELETE /tenants/{id}           delete it and its EAB keys
//	POST   /tenants/{id}/eab       mint an EAB key: {"key_id", "hmac_key"}, the MAC key in base64url, shown once
//	GET    /tenants/{id}/eab       list its EAB keys (IDs only)
//	DELETE /eab/{key_id}           delete an EAB key
//
// Every change is an audit record (operation "relay.admin.…").
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /tenants", func(w http.ResponseWriter, r *http.Request) {
		ts, err := s.Tenants(r.Context())
		s.adminReply(w, http.StatusOK, ts, err)
	})
	mux.HandleFunc("GET /tenants/{id}", func(w http.ResponseWriter, r *http.Request) {
		t, err := s.Tenant(r.Context(), r.PathValue("id"))
		s.adminReply(w, http.StatusOK, t, err)
	})
	mux.HandleFunc("PUT /tenants/{id}", func(w http.ResponseWriter, r *http.Request) {
		var pol Policy
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, DefaultMaxBodySize))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&pol); err != nil {
			s.adminReply(w, 0, nil, fmt.Errorf("%w: the body is not a policy: %s", ErrInvalidTenant, clip(err.Error(), 200)))
			return
		}
		id := r.PathValue("id")
		err := s.PutTenant(r.Context(), Tenant{ID: id, Policy: pol})
		s.adminAudit(r, "putTenant", id, err)
		if err != nil {
			s.adminReply(w, 0, nil, err)
			return
		}
		t, err := s.Tenant(r.Context(), id)
		s.adminReply(w, http.StatusOK, t, err)
	})
	mux.HandleFunc("DELETE /tenants/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		err := s.DeleteTenant(r.Context(), id)
		s.adminAudit(r, "deleteTenant", id, err)
		s.adminReply(w, http.StatusNoContent, nil, err)
	})
	mux.HandleFunc("POST /tenants/{id}/eab", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		eab, err := s.NewEABKey(r.Context(), id)
		s.adminAudit(r, "newEABKey", id, err)
		if err != nil {
			s.adminReply(w, 0, nil, err)
			return
		}
		s.adminReply(w, http.StatusCreated, struct {
			KeyID   string `json:"key_id"`
			HMACKey string `json:"hmac_key"`
		}{eab.KeyID, base64.RawURLEncoding.EncodeToString(eab.HMACKey)}, nil)
	})
	mux.HandleFunc("GET /tenants/{id}/eab", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if _, err := s.Tenant(r.Context(), id); err != nil {
			s.adminReply(w, 0, nil, err)
			return
		}
		keys, err := s.EABKeys(r.Context(), id)
		s.adminReply(w, http.StatusOK, keys, err)
	})
	mux.HandleFunc("DELETE /eab/{kid}", func(w http.ResponseWriter, r *http.Request) {
		err := s.DeleteEABKey(r.Context(), r.PathValue("kid"))
		s.adminAudit(r, "deleteEABKey", "", err)
		s.adminReply(w, http.StatusNoContent, nil, err)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if !allowedSource(r, s.AdminSources) {
			s.adminAudit(r, "refused", "", errors.New("source address not allowed"))
			adminError(w, http.StatusForbidden, "requests from this address are not allowed")
			return
		}
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if s.AdminToken == "" || !ok || subtle.ConstantTimeCompare([]byte(tok), []byte(s.AdminToken)) != 1 {
			s.adminAudit(r, "refused", "", errors.New("bad or missing admin token"))
			w.Header().Set("WWW-Authenticate", `Bearer realm="tlsmint relay"`)
			adminError(w, http.StatusUnauthorized, "a valid admin bearer token is required")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// adminAudit records an administration request.
func (s *Server) adminAudit(r *http.Request, op, tenant string, err error) {
	rec := record.Audit{Outcome: record.OutcomeOK, Operation: OperationPrefix + "admin." + op, Tenant: tenant, Source: remoteAddr(r.RemoteAddr)}
	if err != nil {
		rec.Outcome, rec.Detail = record.OutcomeRefused, clip(err.Error(), 1024)
	}
	s.auditBackground(rec)
}

func adminError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}

// adminReply answers v with status, or the error with the status it
// means.
func (s *Server) adminReply(w http.ResponseWriter, status int, v any, err error) {
	if err != nil {
		switch {
		case errors.Is(err, ErrNoTenant), errors.Is(err, ErrNoEABKey):
			adminError(w, http.StatusNotFound, err.Error())
		case errors.Is(err, ErrInvalidTenant):
			adminError(w, http.StatusBadRequest, err.Error())
		default:
			s.logger().Error("relay: admin request failed", "err", err)
			adminError(w, http.StatusInternalServerError, "internal error")
		}
		return
	}
	if status == http.StatusNoContent {
		w.WriteHeader(status)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
