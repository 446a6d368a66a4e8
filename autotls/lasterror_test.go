package autotls_test

import (
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/storage"
)

// certInfo returns m's record.Certificate of name.
func certInfo(t *testing.T, m *autotls.Manager, name string) record.Certificate {
	t.Helper()
	infos, err := m.Certificates(ctxT(t))
	if err != nil {
		t.Fatalf("Certificates: %v", err)
	}
	for _, i := range infos {
		if i.Name == name {
			return i
		}
	}
	t.Fatalf("Certificates lists no %s: %+v", name, infos)
	return record.Certificate{}
}

// timeIn fails unless at lies in [from, to].
func timeIn(t *testing.T, what string, at, from, to time.Time) {
	t.Helper()
	if at.Before(from) || at.After(to) {
		t.Errorf("%s at %v, want between %v and %v", what, at, from, to)
	}
}

// TestStoredLastError: a renewal that failed against the CA is recorded
// with the stored certificate, and a second Manager over the same
// storage, which did not fail itself, reports it in Certificates; of a
// failure of its own and the stored one, the newer is reported.
func TestStoredLastError(t *testing.T) {
	t.Parallel()
	e := newEnv(t, testpebble.Options{})
	t.Cleanup(func() { e.ca.SetDown(testpebble.Up) })
	store := storage.Dir(t.TempDir())
	var off1, off2 atomic.Int64
	clock := func(off *atomic.Int64) func(m *autotls.Manager) {
		return func(m *autotls.Manager) {
			autotls.SetClockForTest(m, func() time.Time { return time.Now().Add(time.Duration(off.Load())) })
			m.FailureBackoff = time.Minute
		}
	}
	m1 := e.manager(t, store, clock(&off1))
	if _, err := m1.GetCertificate(hello("example.com")); err != nil {
		t.Fatal(err)
	}
	m2 := e.manager(t, store, clock(&off2))
	if i := certInfo(t, m2, "example.com"); i.LastError != "" || i.InMemory || !i.Stored {
		t.Fatalf("before any failure: %+v, want a stored certificate and no error", i)
	}

	// m1's renewal fails: the CA answers 503.
	if err := e.ca.SetDown(testpebble.Down503); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	err1 := autotls.RenewForTest(m1, "example.com")
	after := time.Now()
	if err1 == nil {
		t.Fatal("the renewal succeeded with the CA down")
	}
	i := certInfo(t, m2, "example.com")
	if i.LastError != err1.Error() || i.InMemory || !i.BackoffUntil.IsZero() {
		t.Errorf("second Manager after the failed renewal: %+v, want LastError %q from storage and no back-off of its own", i, err1)
	}
	timeIn(t, "the stored failure", i.LastErrorAt, before, after)

	// m2 fails itself later (its clock past the certificate's expiry, the
	// CA refusing connections): its own failure is newer, and reported.
	if err := e.ca.SetDown(testpebble.Refuse); err != nil {
		t.Fatal(err)
	}
	expiry := i.NotAfter
	off2.Store(int64(time.Until(expiry) + 24*time.Hour))
	before = time.Now().Add(time.Duration(off2.Load()))
	if _, err := m2.GetCertificate(hello("example.com")); err == nil {
		t.Fatal("second Manager obtained a certificate with the CA refusing connections")
	}
	after = time.Now().Add(time.Duration(off2.Load()))
	i = certInfo(t, m2, "example.com")
	if i.LastError == err1.Error() || i.LastError == "" || i.BackoffUntil.IsZero() {
		t.Errorf("after its own failure: %+v, want its own error (not the stored %q) and its back-off", i, err1)
	}
	timeIn(t, "the second Manager's own failure", i.LastErrorAt, before, after)

	// m1 fails again, later still: the stored failure is newer again.
	if err := e.ca.SetDown(testpebble.Down503); err != nil {
		t.Fatal(err)
	}
	off1.Store(int64(time.Until(expiry) + 48*time.Hour))
	before = time.Now().Add(time.Duration(off1.Load()))
	err3 := autotls.RenewForTest(m1, "example.com")
	after = time.Now().Add(time.Duration(off1.Load()))
	if err3 == nil {
		t.Fatal("the second renewal succeeded with the CA down")
	}
	i = certInfo(t, m2, "example.com")
	if i.LastError != err3.Error() || !strings.Contains(i.LastError, "503") {
		t.Errorf("after the newer stored failure: LastError %q, want %q", i.LastError, err3)
	}
	timeIn(t, "the newer stored failure", i.LastErrorAt, before, after)

	// A Manager that only reads the storage shows it as well.
	m3 := &autotls.Manager{Issuers: []autotls.Issuer{{DirectoryURL: e.ca.DirectoryURL()}}, HTTPClient: e.ca.HTTPClient(), Storage: store}
	t.Cleanup(func() { m3.Close() })
	if i := certInfo(t, m3, "example.com"); i.LastError != err3.Error() || !i.LastErrorAt.Equal(certInfo(t, m2, "example.com").LastErrorAt) {
		t.Errorf("a fresh Manager: %+v, want the stored failure %q", i, err3)
	}
}
