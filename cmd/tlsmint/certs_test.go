package main

import (
	"crypto"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/statuspage"
	"github.com/tlsmint/tlsmint/storage"
)

// TestCertsListPages: certs list --limit lists the soonest expiries and
// the cursor that --after takes to go on, through every certificate
// once; --state keeps one state; a bad --state or --limit is a usage
// error.
func TestCertsListPages(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	now := time.Now()
	for i := range 12 {
		name := fmt.Sprintf("n%02d.example.com", i)
		nb, na := now.Add(-80*24*time.Hour), now.Add(time.Duration(60+i)*24*time.Hour)
		if i%4 == 1 { // days of 85 or so left: past its renewal point
			na = now.Add(time.Duration(5+i) * 24 * time.Hour)
		}
		c := selfSigned(t, name, nb, na)
		chain := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]})
		if err := autotls.ImportCertificate(ctxT(t), storage.Dir(dir), autotls.ImportedCertificate{
			Directory: "https://ca.example/directory", Name: name, ChainPEM: chain, Key: c.PrivateKey.(crypto.Signer),
		}); err != nil {
			t.Fatal(err)
		}
	}
	var seen []string
	after := ""
	for pages := 0; pages < 10; pages++ {
		args := []string{"certs", "list", "--storage", dir, "--json", "--limit", "5"}
		if after != "" {
			args = append(args, "--after", after)
		}
		var st statuspage.Status
		runCmd(t, nil, args...).ok(t).decode(t, &st)
		if st.Total != 12 || len(st.Certificates) > 5 {
			t.Fatalf("page %d: total %d, %d rows", pages, st.Total, len(st.Certificates))
		}
		for _, c := range st.Certificates {
			seen = append(seen, c.Name)
		}
		if st.Next == "" {
			break
		}
		after = st.Next
	}
	if len(seen) != 12 || seen[0] != "n01.example.com" || seen[11] != "n11.example.com" {
		t.Errorf("pages listed %v, want all 12 once, the soonest expiry first", seen)
	}
	var st statuspage.Status
	runCmd(t, nil, "certs", "list", "--storage", dir, "--json", "--state", "expiring").ok(t).decode(t, &st)
	var names []string
	for _, c := range st.Certificates {
		if c.State != statuspage.StateExpiring {
			t.Errorf("%s is %s in the expiring list", c.Name, c.State)
		}
		names = append(names, c.Name)
	}
	if strings.Join(names, " ") != "n01.example.com n05.example.com n09.example.com" {
		t.Errorf("--state expiring listed %v", names)
	}
	r := runCmd(t, nil, "certs", "list", "--storage", dir, "--limit", "2").ok(t)
	if !strings.Contains(r.stderr, "2 of 12 listed; the next: --after ") {
		t.Errorf("stderr %q lacks the cursor", r.stderr)
	}
	runCmd(t, nil, "certs", "list", "--storage", dir, "--state", "sad").fails(t, exitUsage, "--state")
	runCmd(t, nil, "certs", "list", "--storage", dir, "--limit", "-1").fails(t, exitUsage, "--limit")
	runCmd(t, nil, "certs", "list", "--storage", dir, "--after", "nodot").fails(t, exitUsage, "cursor")
}
