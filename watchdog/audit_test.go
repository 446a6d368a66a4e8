package watchdog_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/audit"
	"github.com/tlsmint/tlsmint/internal/testsetup"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/storage"
	"github.com/tlsmint/tlsmint/watchdog"
)

// TestAuditRecords: a round writes a probe record for every target with
// problems (healthy ones write none), naming the problems, the target, the
// served serial and expiry; a target that recovers writes one OK record in
// the next round, and none after that.
func TestAuditRecords(t *testing.T) {
	ca := newTestCA(t)
	now := time.Now()
	healthy := testsetup.ServeCertificate(t, ca.leaf(t, now.Add(-time.Hour), now.Add(90*day), "healthy.test"))
	expiringCert := ca.leaf(t, now.Add(-80*day), now.Add(2*day), "expiring.test")
	var served atomic.Pointer[tls.Certificate]
	served.Store(&expiringCert)
	expiring := testsetup.ServeTLS(t, "127.0.0.1:0", &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		return served.Load(), nil
	}})
	wrongName := testsetup.ServeCertificate(t, ca.leaf(t, now.Add(-time.Hour), now.Add(90*day), "other.test"))
	selfSigned := testsetup.ServeCertificate(t, selfSigned(t, now.Add(-time.Hour), now.Add(90*day), "self.test"))

	trail := &audit.Log{Storage: storage.NewMemory(), Node: "probe-node"}
	defer trail.Close()
	w := &watchdog.Watchdog{
		Targets: []watchdog.Target{
			{Addr: healthy, ServerName: "healthy.test"},
			{Addr: expiring, ServerName: "expiring.test"},
			{Addr: wrongName, ServerName: "wrong.test"},
			{Addr: selfSigned, ServerName: "self.test"},
		},
		Roots:    ca.pool,
		AuditLog: trail,
	}
	defer w.Close()
	ctx := ctxT(t)
	probes := func() []record.Audit {
		t.Helper()
		if err := trail.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		recs, err := trail.Query(ctx, record.AuditFilter{Kind: record.KindProbe})
		if err != nil {
			t.Fatal(err)
		}
		return recs
	}
	summary := func(recs []record.Audit) []string {
		var out []string
		for _, r := range recs {
			out = append(out, fmt.Sprintf("%s %s %s", r.Names[0], r.Outcome, r.Problem))
		}
		slices.Sort(out)
		return out
	}

	results, err := w.Probe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	recs := probes()
	want := []string{"expiring.test failure expiring_soon", "self.test failure untrusted", "wrong.test failure name_mismatch"}
	if got := summary(recs); !slices.Equal(got, want) {
		t.Fatalf("first round: records %q, want %q", got, want)
	}
	for _, r := range recs {
		if r.Node != "probe-node" || r.Operation != "probe" || r.Detail == "" || r.Serial == "" || r.NotAfter.IsZero() || r.Target == "" {
			t.Errorf("record %+v: want node, operation, detail, serial, not_after and target", r)
		}
		if r.Names[0] == "expiring.test" && (r.Target != expiring || r.Serial != results[1].Serial() || !r.NotAfter.Equal(expiringCert.Leaf.NotAfter)) {
			t.Errorf("expiring.test record: target %s serial %s not_after %v, want %s %s %v",
				r.Target, r.Serial, r.NotAfter, expiring, results[1].Serial(), expiringCert.Leaf.NotAfter)
		}
	}

	// The expiring certificate is replaced: one OK record for it.
	fresh := ca.leaf(t, now.Add(-time.Hour), now.Add(90*day), "expiring.test")
	served.Store(&fresh)
	if _, err := w.Probe(ctx); err != nil {
		t.Fatal(err)
	}
	want = append(want, "expiring.test ok ", "self.test failure untrusted", "wrong.test failure name_mismatch")
	slices.Sort(want)
	if got := summary(probes()); !slices.Equal(got, want) {
		t.Fatalf("after the fix: records %q, want %q", got, want)
	}
	// Healthy again: nothing more for it.
	if _, err := w.Probe(ctx); err != nil {
		t.Fatal(err)
	}
	if got := probes(); len(got) != len(want)+2 {
		t.Fatalf("third round: %d records, want %d (the two broken targets again)", len(got), len(want)+2)
	}
}

func TestProblemName(t *testing.T) {
	for err, want := range map[error]string{
		fmt.Errorf("x: %w", watchdog.ErrExpiringSoon):          "expiring_soon",
		fmt.Errorf("x: %w", watchdog.ErrExpired):               "expired",
		fmt.Errorf("x: %w", watchdog.ErrNotManagerCertificate): "not_manager_certificate",
		watchdog.ErrUnreachable:                                "unreachable",
		errors.New("something else"):                           "other",
		nil:                                                    "other",
	} {
		if got := watchdog.ProblemName(err); got != want {
			t.Errorf("ProblemName(%v) = %q, want %q", err, got, want)
		}
	}
}

func TestProblemNames(t *testing.T) {
	r := watchdog.Result{Problems: []error{
		fmt.Errorf("a: %w", watchdog.ErrUntrusted), fmt.Errorf("b: %w", watchdog.ErrExpiringSoon), fmt.Errorf("c: %w", watchdog.ErrUntrusted),
	}}
	if got := r.ProblemNames(); !slices.Equal(got, []string{"untrusted", "expiring_soon"}) {
		t.Fatalf("ProblemNames() = %q, want each name once in order", got)
	}
	if got := (watchdog.Result{}).ProblemNames(); got != nil {
		t.Fatalf("ProblemNames() of a healthy result = %q, want nil", got)
	}
}
