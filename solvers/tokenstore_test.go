package solvers_test

import (
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/solvers"
	"github.com/tlsmint/tlsmint/storage"
)

// storage.Storage is a KeyValueStore without glue.
var _ solvers.KeyValueStore = storage.Storage(nil)

// TestStorageTokensOverStorage runs StorageTokens over the real in-memory
// storage backend, as a fleet would over the file or PostgreSQL backend.
func TestStorageTokensOverStorage(t *testing.T) {
	tests := []struct {
		name   string
		prefix string
		key    string
	}{
		{"default prefix", "", solvers.DefaultTokenPrefix + "/" + testToken},
		{"own prefix", "fleet/tokens", "fleet/tokens/" + testToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := storage.NewMemory()
			tokens := solvers.StorageTokens{Storage: st, Prefix: tt.prefix}
			presenter := &solvers.HTTP01{Store: tokens}
			server := &solvers.HTTP01{Store: tokens}
			chal := httpChallenge(acme.IdentifierDNS, "example.com")
			if err := presenter.Present(t.Context(), chal); err != nil {
				t.Fatalf("Present: %v", err)
			}
			if _, err := st.Load(t.Context(), tt.key); err != nil {
				t.Errorf("Load(%q): %v", tt.key, err)
			}
			req := httptest.NewRequest(http.MethodGet, "http://example.com"+chal.HTTP01ResourcePath(), nil)
			rec := httptest.NewRecorder()
			server.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK || rec.Body.String() != testKeyAut {
				t.Errorf("other node: got %d %q, want 200 %q", rec.Code, rec.Body.String(), testKeyAut)
			}
			if err := presenter.CleanUp(t.Context(), chal); err != nil {
				t.Fatalf("CleanUp: %v", err)
			}
			if _, err := st.Load(t.Context(), tt.key); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("after CleanUp, Load: got %v, want fs.ErrNotExist", err)
			}
			if _, err := tokens.Get(t.Context(), testToken); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("after CleanUp, Get: got %v, want fs.ErrNotExist", err)
			}
		})
	}
}
