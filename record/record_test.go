package record_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/internal/testenv"
	"github.com/tlsmint/tlsmint/record"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestAuditJSON: an audit record's JSON, which the audit trail stores, has
// the field names and omissions it had in autotls; a stored line reads back
// into the same record.
func TestAuditJSON(t *testing.T) {
	at := time.Date(2026, 12, 8, 1, 2, 3, 0, time.UTC)
	r := record.Audit{
		Time: at, Node: "web-1", Kind: record.KindDecision, Outcome: record.OutcomeRefused,
		Tenant: "acme-co", Source: "192.0.2.1", Issuer: "https://ca.example/dir", Account: "https://ca.example/acct/1",
		Operation: "relay.newOrder", Names: []string{"example.com"}, Target: "192.0.2.2:443",
		Status: 429, Problem: "urn:ietf:params:acme:error:rateLimited", Detail: "slow down",
		RetryAfter: time.Second, Latency: 2 * time.Millisecond, Retries: 1,
		Serial: "0a", NotAfter: at.Add(time.Hour), Until: at.Add(time.Minute),
	}
	got, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"time":"2026-12-08T01:02:03Z","node":"web-1","kind":"decision","outcome":"refused",` +
		`"tenant":"acme-co","source":"192.0.2.1","issuer":"https://ca.example/dir","account":"https://ca.example/acct/1",` +
		`"operation":"relay.newOrder","names":["example.com"],"target":"192.0.2.2:443",` +
		`"status":429,"problem":"urn:ietf:params:acme:error:rateLimited","detail":"slow down",` +
		`"retry_after":1000000000,"latency":2000000,"retries":1,` +
		`"serial":"0a","not_after":"2026-12-08T02:02:03Z","until":"2026-12-08T01:03:03Z"}`
	if string(got) != want {
		t.Errorf("json.Marshal:\ngot  %s\nwant %s", got, want)
	}
	var back record.Audit
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatal(err)
	}
	if again, _ := json.Marshal(back); !bytes.Equal(again, got) {
		t.Errorf("round trip: got %s, want %s", again, got)
	}

	got, err = json.Marshal(record.Audit{Time: at, Node: "n", Kind: record.KindExchange, Outcome: record.OutcomeOK, Operation: "newOrder"})
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"time":"2026-12-08T01:02:03Z","node":"n","kind":"exchange","outcome":"ok","operation":"newOrder"}`; string(got) != want {
		t.Errorf("json.Marshal of a sparse record: got %s, want %s", got, want)
	}
}

// TestDNSFormats: a DNS record prints as a zone file line and logs its
// fields, persist_until only when set, with both slog handlers.
func TestDNSFormats(t *testing.T) {
	r := record.DNS{Name: "_validation-persist.example.com", Type: "TXT", Value: "ca.example; accounturi=x",
		ZoneFileValue: `"ca.example; accounturi=x"`, Issuer: "https://ca.example/dir", Reason: "NXDOMAIN"}
	if got, want := r.String(), `_validation-persist.example.com. IN TXT "ca.example; accounturi=x"`; got != want {
		t.Errorf("String: got %q, want %q", got, want)
	}
	ending := r
	ending.PersistUntil = time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name string
		rec  record.DNS
		want []string
		not  []string
	}{
		{"missing", r, []string{"name=_validation-persist.example.com", "type=TXT", `value="ca.example; accounturi=x"`, "reason=NXDOMAIN"}, []string{"persist_until", "zone"}},
		{"ending", ending, []string{"persist_until=2027-01-02T03:04:05.000Z"}, nil},
	} {
		for _, h := range []string{"text", "json"} {
			var buf bytes.Buffer
			var l *slog.Logger
			if h == "text" {
				l = slog.New(slog.NewTextHandler(&buf, nil))
			} else {
				l = slog.New(slog.NewJSONHandler(&buf, nil))
			}
			l.Info("x", "rec", tc.rec)
			out := buf.String()
			for _, w := range tc.want {
				if h == "json" {
					k, v, _ := strings.Cut(w, "=")
					if !strings.HasPrefix(v, `"`) {
						v = `"` + v + `"`
					}
					if k == "persist_until" {
						v = `"2027-01-02T03:04:05Z"`
					}
					w = `"` + k + `":` + v
				} else {
					w = "rec." + w
				}
				if !strings.Contains(out, w) {
					t.Errorf("%s, %s handler: got %s, want it to contain %s", tc.name, h, out, w)
				}
			}
			for _, n := range tc.not {
				if strings.Contains(out, n) {
					t.Errorf("%s, %s handler: got %s, want no %s", tc.name, h, out, n)
				}
			}
		}
	}
}

// TestDependencyDirection: the records' package imports no package of
// tlsmint, and the relay, which returns records, does not import autotls
// (DESIGN.md: "relay does not import autotls").
func TestDependencyDirection(t *testing.T) {
	goCmd := testenv.Command(t, "the go command", "go", "the test lists the packages' dependencies with go list")
	for _, tc := range []struct {
		pkg    string
		denied func(dep string) bool
	}{
		{"github.com/tlsmint/tlsmint/record", func(dep string) bool {
			return dep != "github.com/tlsmint/tlsmint/record" && strings.HasPrefix(dep, "github.com/tlsmint/tlsmint")
		}},
		{"github.com/tlsmint/tlsmint/relay", func(dep string) bool { return dep == "github.com/tlsmint/tlsmint/autotls" }},
	} {
		out, err := exec.Command(goCmd, "list", "-deps", tc.pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", tc.pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if tc.denied(dep) {
				t.Errorf("%s depends on %s", tc.pkg, dep)
			}
		}
	}
}
