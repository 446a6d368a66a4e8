package dns01test_test

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/libdns/libdns"
	"github.com/tlsmint/tlsmint/internal/testpebble"
	"github.com/tlsmint/tlsmint/solvers/dns01test"
)

func TestProvider(t *testing.T) {
	const zone = "example.com."
	tests := []struct {
		name      string
		delay     time.Duration
		add       []string
		del       []libdns.Record
		wait      time.Duration
		wantGone  int
		wantAfter []string
	}{
		{"exact delete", 0, []string{"a", "b"}, []libdns.Record{libdns.TXT{Name: "_acme-challenge", Text: "a"}}, 0, 1, []string{"b"}},
		{"delete of a missing value", 0, []string{"a"}, []libdns.Record{libdns.TXT{Name: "_acme-challenge", Text: "c"}}, 0, 0, []string{"a"}},
		{"empty value deletes all", 0, []string{"a", "b"}, []libdns.Record{libdns.RR{Name: "_acme-challenge", Type: "TXT"}}, 0, 2, nil},
		{"other type ignored", 0, []string{"a"}, []libdns.Record{libdns.RR{Name: "_acme-challenge", Type: "A", Data: "a"}}, 0, 0, []string{"a"}},
		{"delayed, deleted before visible", time.Hour, []string{"a"}, []libdns.Record{libdns.TXT{Name: "_acme-challenge", Text: "a"}}, 0, 1, nil},
		{"delayed, visible later", 50 * time.Millisecond, []string{"a"}, nil, 300 * time.Millisecond, 0, []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The DNS server does network I/O, so it lives outside the
			// bubble; the Provider's timers live inside, on the bubble's
			// fake clock, so the delays are exact whatever the load.
			srv, err := testpebble.NewDNSServer()
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			synctest.Test(t, func(t *testing.T) {
				p := &dns01test.Provider{Server: srv, Delay: tt.delay}
				for _, v := range tt.add {
					got, err := p.AppendRecords(t.Context(), zone, []libdns.Record{libdns.TXT{Name: "_acme-challenge", TTL: time.Minute, Text: v}})
					if err != nil || len(got) != 1 {
						t.Fatalf("AppendRecords: got %v, %v", got, err)
					}
				}
				if tt.delay > 0 {
					if v := srv.TXT("_acme-challenge.example.com"); v != nil {
						t.Fatalf("visible before the delay: %q", v)
					}
				}
				gone, err := p.DeleteRecords(t.Context(), zone, tt.del)
				if err != nil || len(gone) != tt.wantGone {
					t.Fatalf("DeleteRecords: got %v, %v, want %d records", gone, err, tt.wantGone)
				}
				time.Sleep(tt.wait) // fake time: returns once the timers due by then have run
				synctest.Wait()
				if got := srv.TXT("_acme-challenge.example.com"); !slices.Equal(got, tt.wantAfter) {
					t.Errorf("TXT: got %q, want %q", got, tt.wantAfter)
				}
			})
		})
	}
}
