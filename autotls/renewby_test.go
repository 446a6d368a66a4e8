package autotls_test

import (
	"encoding/json"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/statuspage"
)

// The CA's renewal window moves the Manager's deadline away from its own
// window's end (a third of 90 days left), later for one name and earlier
// for another; the Manager reports the deadline it works to (RenewBy, in
// record.Certificate and in the Snapshot), and the status page judges each
// certificate by it: ok between the planned renewal and the deadline,
// expiring once the deadline has passed — in the rows it loads and in the
// counts it takes from the snapshot.
func TestStatusPageFollowsRenewBy(t *testing.T) {
	t.Parallel()
	const day = 24 * time.Hour
	var window atomic.Pointer[[2]time.Duration] // after the poll
	ari := rewrite("/draft-ietf-acme-ari-03/renewalInfo", func(rec *httptest.ResponseRecorder) []byte {
		w := window.Load()
		now := time.Now().UTC().Truncate(time.Second)
		var ri struct {
			SuggestedWindow struct {
				Start time.Time `json:"start"`
				End   time.Time `json:"end"`
			} `json:"suggestedWindow"`
		}
		ri.SuggestedWindow.Start, ri.SuggestedWindow.End = now.Add(w[0]), now.Add(w[1])
		b, _ := json.Marshal(ri)
		return b
	})
	e := newEnv(t, testpebble.Options{Wrap: ari})
	ev := newEventLog()
	m := e.manager(t, nil, func(m *autotls.Manager) { m.OnEvent = ev.on })
	ctx := ctxT(t)

	cases := []struct {
		name   string
		window [2]time.Duration
	}{
		{"example.com", [2]time.Duration{70 * day, 75 * day}},     // later than day 60
		{"www.example.org", [2]time.Duration{30 * day, 40 * day}}, // earlier
	}
	infos := map[string]record.Certificate{}
	for _, tc := range cases {
		window.Store(&tc.window)
		if _, err := m.GetCertificate(hello(tc.name)); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if s := ev.next(t, autotls.EventScheduled, tc.name, 30*time.Second); s.Reason != autotls.ReasonARI {
			t.Fatalf("%s: scheduled by %q, want %q", tc.name, s.Reason, autotls.ReasonARI)
		}
		got, err := m.CertificatesOf(ctx, tc.name)
		if err != nil || len(got) != 1 {
			t.Fatalf("%s: CertificatesOf: %v, %v", tc.name, got, err)
		}
		info := got[0]
		own := autotls.RenewalDeadline(info.NotBefore, info.NotAfter, time.Time{}, time.Time{})
		if !info.RenewBy.Equal(info.ARIWindowEnd) || info.RenewBy.Equal(own) {
			t.Fatalf("%s: RenewBy %v, want the CA's window end %v (not the own window's end %v)", tc.name, info.RenewBy, info.ARIWindowEnd, own)
		}
		if info.RenewAt.Before(info.ARIWindowStart) || !info.RenewAt.Before(info.RenewBy) {
			t.Fatalf("%s: RenewAt %v, want within [%v, %v)", tc.name, info.RenewAt, info.ARIWindowStart, info.RenewBy)
		}
		infos[tc.name] = info
	}
	snap, err := m.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if snap.Len() != len(cases) {
		t.Fatalf("snapshot of %d rows, want %d", snap.Len(), len(cases))
	}
	for i := range snap.Len() {
		r := snap.Row(i)
		if want := infos[r.Name].RenewBy; !r.RenewBy.Equal(want) {
			t.Errorf("snapshot row %s: RenewBy %v, want the Manager's %v", r.Name, r.RenewBy, want)
		}
	}

	for _, tc := range cases {
		info := infos[tc.name]
		for _, at := range []struct {
			what string
			now  time.Time
			want statuspage.State
		}{
			{"between the planned renewal and the deadline", info.RenewAt.Add(info.RenewBy.Sub(info.RenewAt) / 2), statuspage.StateOK},
			{"past the deadline", info.RenewBy.Add(time.Minute), statuspage.StateExpiring},
		} {
			h := &statuspage.Handler{Manager: m, Now: func() time.Time { return at.now }}
			st, err := h.Query(ctx, statuspage.Query{})
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Certificates) != len(cases) {
				t.Fatalf("%s %s: %d certificates on the page, want %d", tc.name, at.what, len(st.Certificates), len(cases))
			}
			want := map[statuspage.State]int{}
			for _, c := range st.Certificates {
				other := infos[c.Name]
				w := statuspage.StateOK
				if at.now.After(other.RenewBy) {
					w = statuspage.StateExpiring
				}
				want[w]++
				if c.Name == tc.name && (c.State != at.want || !c.RenewBy.Equal(info.RenewBy)) {
					t.Errorf("%s %s (%v): state %s, renew_by %v; want %s, %v", tc.name, at.what, at.now, c.State, c.RenewBy, at.want, info.RenewBy)
				}
				if c.State != w {
					t.Errorf("%s at %v: state %s, want %s", c.Name, at.now, c.State, w)
				}
			}
			for s, n := range want {
				if st.Counts[s] != n {
					t.Errorf("%s %s: counts %v, want %v", tc.name, at.what, st.Counts, want)
					break
				}
			}
		}
	}
}
