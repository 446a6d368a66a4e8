package autotls

import (
	"fmt"
	"testing"
	"time"
)

// TestRenewDeadline checks the deadline of each kind of plan, and that
// planRenewal never plans past it (but for a time in the past, which it
// moves to now).
func TestRenewDeadline(t *testing.T) {
	t.Parallel()
	nb := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	const day = 24 * time.Hour
	ari := func(start, end time.Duration) *ariState {
		return &ariState{WindowStart: nb.Add(start), WindowEnd: nb.Add(end)}
	}
	for _, tc := range []struct {
		name string
		life time.Duration
		ari  *ariState
		want time.Duration // after nb; -1: zero
	}{
		{"90 days, own window", 90 * day, nil, 60 * day},
		{"6 days, own window", 6 * day, nil, 3 * day},
		{"10 days, own window", 10 * day, nil, 5 * day},
		{"11 days, own window", 11 * day, nil, 11 * day * 2 / 3},
		{"ARI window ending later", 90 * day, ari(70*day, 75*day), 75 * day},
		{"ARI window ending earlier", 90 * day, ari(30*day, 40*day), 40 * day},
		{"ARI window past the tenth", 90 * day, ari(80*day, 85*day), 81 * day},
		{"ARI window past expiry: unusable", 90 * day, ari(80*day, 91*day), 60 * day},
		{"ARI window reversed: unusable", 90 * day, ari(40*day, 30*day), 60 * day},
		{"ARI window before issuance", 90 * day, ari(-2*day, -day), -day},
	} {
		t.Run(tc.name, func(t *testing.T) {
			na := nb.Add(tc.life)
			want := nb.Add(tc.want)
			if got := renewDeadline(nb, na, tc.ari); !got.Equal(want) {
				t.Fatalf("renewDeadline: got %v, want %v", got, want)
			}
			var start, end time.Time
			if tc.ari != nil {
				start, end = tc.ari.WindowStart, tc.ari.WindowEnd
			}
			if got := RenewalDeadline(nb, na, start, end); !got.Equal(want) {
				t.Fatalf("RenewalDeadline: got %v, want %v", got, want)
			}
			for _, now := range []time.Time{nb, nb.Add(tc.life / 2), na.Add(-time.Hour)} {
				for i := range 200 {
					name := fmt.Sprintf("n%d.example", i)
					at, reason := planRenewal(name, []byte{byte(i)}, nb, na, tc.ari, now)
					if at.After(want) && !at.Equal(now) {
						t.Fatalf("%s at %v: planned %v (%s), after the deadline %v", name, now, at, reason, want)
					}
					if by := renewBy(nb, na, tc.ari, at); by.Before(at) || (!at.After(want) && !by.Equal(want)) {
						t.Fatalf("%s at %v: renewBy %v for a plan at %v, want %v or the plan when later", name, now, by, at, want)
					}
				}
			}
		})
	}
	if got := RenewalDeadline(time.Time{}, nb, time.Time{}, time.Time{}); !got.IsZero() {
		t.Errorf("lifetime unknown: got %v, want zero", got)
	}
	if got := renewBy(time.Time{}, nb, nil, nb.Add(-day)); !got.Equal(nb.Add(-day)) {
		t.Errorf("lifetime unknown: renewBy got %v, want the plan", got)
	}
}

// The floor of a certificate that replaced one the CA had due, and whose
// own window has passed too, is its deadline: the Manager does not renew
// it before, so it is not late before.
func TestRenewByFloor(t *testing.T) {
	t.Parallel()
	m := &Manager{}
	m.state()
	e := fakeEntry(m, "floor.example", 7, time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), 90*24*time.Hour)
	now := e.notBefore.Add(time.Minute)
	e.ari = &ariState{WindowStart: e.notBefore.Add(-2 * time.Hour), WindowEnd: e.notBefore.Add(-time.Hour)}
	e.ariRenewed = true
	planEntry(e, now)
	floor := e.notBefore.Add(renewFloorAge)
	if e.reason != ReasonARIPast || !e.renewAt.Equal(floor) {
		t.Fatalf("planned %v (%s), want the floor %v (%s)", e.renewAt, e.reason, floor, ReasonARIPast)
	}
	if got := m.entryInfo(e).RenewBy; !got.Equal(floor) {
		t.Fatalf("RenewBy: got %v, want the floor %v", got, floor)
	}
}

// A snapshot row keeps the deadline in whole seconds, rounded towards
// NotAfter, and estimates it for a row only the index knows.
func TestSnapRowRenewBy(t *testing.T) {
	t.Parallel()
	nb := time.Unix(1_800_000_000, 0)
	na := nb.Add(90 * 24 * time.Hour)
	r := snapRow{notBefore: nb.Unix(), notAfter: na.Unix(), renewAt: nb.Add(50 * 24 * time.Hour).UnixNano()}
	if got, want := r.renewByOf(), nb.Add(60*24*time.Hour); !got.Equal(want) {
		t.Errorf("index row: got %v, want the own window's end %v", got, want)
	}
	late := r
	late.renewAt = nb.Add(70 * 24 * time.Hour).UnixNano()
	if got, want := late.renewByOf(), nb.Add(70*24*time.Hour); !got.Equal(want) {
		t.Errorf("index row planned after the own window: got %v, want the plan %v", got, want)
	}
	exact := nb.Add(75 * 24 * time.Hour)
	r.setRenewBy(exact)
	if got := r.renewByOf(); !got.Equal(exact) {
		t.Errorf("recorded: got %v, want %v", got, exact)
	}
	r.setRenewBy(exact.Add(300 * time.Millisecond))
	if got, want := r.renewByOf(), exact.Add(time.Second); !got.Equal(want) {
		t.Errorf("recorded with a fraction: got %v, want %v", got, want)
	}
	if got := (&snapRow{}).renewByOf(); !got.IsZero() {
		t.Errorf("no certificate: got %v, want zero", got)
	}
}
