package solvers_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/libdns/libdns"
	"github.com/tlsmint/tlsmint/solvers"
)

func TestManualDNS(t *testing.T) {
	var out bytes.Buffer
	m := &solvers.ManualDNS{Out: &out}
	rec := libdns.TXT{Name: "_acme-challenge.www", TTL: time.Minute, Text: `v"a\l`}
	got, err := m.AppendRecords(context.Background(), "example.com.", []libdns.Record{rec})
	if err != nil || len(got) != 1 {
		t.Fatalf("AppendRecords = %v, %v", got, err)
	}
	want := "Create this TXT record (zone example.com.):\n_acme-challenge.www.example.com. 60 IN TXT \"v\\\"a\\\\l\"\n"
	if out.String() != want {
		t.Errorf("printed %q, want %q", out.String(), want)
	}
	out.Reset()
	if _, err := m.DeleteRecords(context.Background(), "example.com.", got); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "may be deleted") || !strings.Contains(out.String(), "_acme-challenge.www.example.com. 60 IN TXT") {
		t.Errorf("delete printed %q", out.String())
	}
	// Without Out nothing is printed and nothing fails.
	if _, err := (&solvers.ManualDNS{}).AppendRecords(context.Background(), "example.com.", []libdns.Record{rec}); err != nil {
		t.Error(err)
	}
}
