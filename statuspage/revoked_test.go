package statuspage

import (
	"strings"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/audit"
	"github.com/tlsmint/tlsmint/record"
	"github.com/tlsmint/tlsmint/storage"
)

// A certificate a watchdog found revoked (its CRL lists the serial) is
// shown revoked, in red; another with the same name but another serial is
// not.
func TestWatchdogRevokedShown(t *testing.T) {
	trail := &audit.Log{Storage: storage.NewMemory(), Node: "node-a"}
	defer trail.Close()
	healthy := cert("healthy.example.com", -7*day, 90*day)
	healthy.Serial = "0bad"
	other := cert("other.example.com", -7*day, 90*day)
	other.Serial = "0c0c"
	trail.Add(record.Audit{Time: t0.Add(-time.Hour), Kind: record.KindProbe, Outcome: record.OutcomeFailure, Operation: "probe",
		Target: "10.0.0.1:443", Names: []string{"healthy.example.com"}, Serial: "0bad", Problem: "revoked"})
	trail.Add(record.Audit{Time: t0.Add(-time.Hour), Kind: record.KindProbe, Outcome: record.OutcomeFailure, Operation: "probe",
		Target: "10.0.0.1:443", Names: []string{"other.example.com"}, Serial: "ffff", Problem: "name_mismatch,revoked"})
	h := synthetic([]record.Certificate{healthy, other}, nil)
	h.Audit = trail
	st := decodeStatus(t, get(t, h, "/?format=json", nil))
	states := map[string]State{}
	for _, c := range st.Certificates {
		states[c.Name] = c.State
	}
	if states["healthy.example.com"] != StateRevoked || states["other.example.com"] != StateOK {
		t.Errorf("states %v, want healthy.example.com revoked (its serial) and other.example.com ok (another serial)", states)
	}
	if st.Counts[StateRevoked] != 1 || st.Counts[StateOK] != 1 {
		t.Errorf("counts %v, want 1 revoked, 1 ok", st.Counts)
	}
	body := get(t, h, "/", nil).Body.String()
	if !strings.Contains(body, `data-name="healthy.example.com" data-state="revoked"`) {
		t.Errorf("the page does not show healthy.example.com revoked")
	}
	if !strings.Contains(pageCSS, "--revoked-bg: #a40e26;") {
		t.Errorf("revoked is not red in the page's style")
	}
}
