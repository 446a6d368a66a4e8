package statuspage

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/audit"
	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/record"
)

// A real fleet against the test CA: two nodes, one storage, one trail.
func TestRealManager(t *testing.T) {
	m, trail, later := realFleet(t)
	issued := time.Now()

	t.Run("a week later", func(t *testing.T) {
		h := &Handler{Manager: m, Audit: trail, Now: func() time.Time { return later }}
		st := decodeStatus(t, get(t, h, "/?format=json", nil))
		type row struct {
			Name  string
			State State
			Days  int
		}
		var got []row
		for _, c := range st.Certificates {
			got = append(got, row{c.Name, c.State, c.DaysLeft})
		}
		want := []row{{brokenName, StateFailing, 0}, {soonName, StateExpiring, 1}, {healthyName, StateOK, 83}}
		if !slices.Equal(got, want) {
			t.Fatalf("got %v, want %v", got, want)
		}
		broken, soon, healthy := st.Certificates[0], st.Certificates[1], st.Certificates[2]
		if !strings.Contains(broken.LastError, "rejectedIdentifier") || broken.BackoffUntil.IsZero() || !broken.Managed || !broken.NotAfter.IsZero() {
			t.Errorf("got %+v, want a managed name without certificate, the CA's rejectedIdentifier and a back-off", broken)
		}
		// A new certificate's first ARI poll is hours after issuance: its
		// plan is still the Manager's own window.
		if !soon.Stored || soon.InMemory || soon.Managed || soon.RenewReason != autotls.ReasonSchedule {
			t.Errorf("got %+v, want node-b's certificate, stored, planned by its own window", soon)
		}
		if !healthy.Stored || !healthy.InMemory || !healthy.Managed || healthy.Serial == "" || healthy.Names[0] != healthyName {
			t.Errorf("got %+v, want node-a's certificate in memory and stored", healthy)
		}
		if !slices.ContainsFunc(st.Activity, func(r record.Audit) bool {
			return r.Kind == record.KindExchange && r.Operation == acme.OpNewOrder && r.Outcome == record.OutcomeFailure &&
				slices.Contains(r.Names, brokenName) && strings.HasSuffix(r.Problem, "rejectedIdentifier")
		}) {
			t.Errorf("the activity lacks the refused newOrder: %+v", st.Activity)
		}
		for i := 1; i < len(st.Activity); i++ {
			if st.Activity[i].Time.After(st.Activity[i-1].Time) {
				t.Fatalf("activity not newest first at %d", i)
			}
		}
		var nodes []string
		for _, n := range st.Nodes {
			nodes = append(nodes, n.Name+":"+strings.Join(n.Holds, ","))
		}
		if want := []string{"node-a:" + healthyName, "node-b:" + soonName}; !slices.Equal(nodes, want) {
			t.Errorf("got nodes %q, want %q", nodes, want)
		}
		// A week later, new orders are out of their 3-hour window; both
		// certificates count for example.com's week.
		if len(st.RateLimits) != 1 || st.RateLimits[0].Kind != audit.UsageCertificates || st.RateLimits[0].Key != "example.com" ||
			st.RateLimits[0].Count != 2 || st.RateLimits[0].Limit != 50 {
			t.Errorf("got rate limits %+v, want 2 of 50 certificates for example.com", st.RateLimits)
		}
	})

	t.Run("at issuance", func(t *testing.T) {
		h := &Handler{Manager: m, Audit: trail, Now: func() time.Time { return issued }}
		st := decodeStatus(t, get(t, h, "/?format=json", nil))
		for _, c := range st.Certificates {
			if want := map[string]State{brokenName: StateFailing, soonName: StateOK, healthyName: StateOK}[c.Name]; c.State != want {
				t.Errorf("%s: got %s, want %s", c.Name, c.State, want)
			}
		}
		if !slices.ContainsFunc(st.RateLimits, func(u RateLimit) bool {
			return u.Kind == audit.UsageNewOrders && u.Count >= 1 && u.Limit == 300 && u.WindowSeconds == 3*3600
		}) {
			t.Errorf("got rate limits %+v, want new orders counted against 300 per 3 hours", st.RateLimits)
		}
	})

	t.Run("no key material", func(t *testing.T) {
		h := &Handler{Manager: m, Audit: trail}
		for _, target := range []string{"/", "/?format=json"} {
			body := get(t, h, target, nil).Body.String()
			for _, bad := range []string{"PRIVATE", "BEGIN", "-----", `"d":`, "protected", "signature"} {
				if strings.Contains(body, bad) {
					t.Errorf("%s contains %q", target, bad)
				}
			}
		}
	})
}
