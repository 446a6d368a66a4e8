package solvers

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/libdns/libdns"
)

// ManualDNS is a DNSProvider for a person: instead of calling a DNS
// provider's API, it writes the exact TXT record to publish to Out, and,
// once the challenge is done, the record that may be deleted. Give it to
// DNS01, whose Wait then polls the zone's authoritative nameservers until
// the person's record is visible, so the challenge is submitted only when
// the CA can see it:
//
//	d := &solvers.DNS01{Provider: &solvers.ManualDNS{Out: os.Stderr}, PropagationTimeout: 10 * time.Minute}
//
// Each record is written as one line of zone file syntax after an
// instruction, for example:
//
//	Create this TXT record (zone example.com.):
//	_acme-challenge.example.com. 60 IN TXT "gfj9Xq...Rg85nM"
//
// It is safe for concurrent use; lines of concurrent calls do not
// interleave.
type ManualDNS struct {
	// Out receives the instructions. Nil discards them, which is of no
	// use: set it.
	Out io.Writer

	mu sync.Mutex
}

var _ DNSProvider = (*ManualDNS)(nil)

// AppendRecords writes the records to create and returns them as given:
// the person creates them.
func (m *ManualDNS) AppendRecords(_ context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	m.write("Create this TXT record (zone "+zone+"):", zone, recs)
	return recs, nil
}

// DeleteRecords writes the records that may now be deleted.
func (m *ManualDNS) DeleteRecords(_ context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	m.write("The challenge is done; this TXT record may be deleted:", zone, recs)
	return recs, nil
}

func (m *ManualDNS) write(intro, zone string, recs []libdns.Record) {
	if m.Out == nil {
		return
	}
	var b strings.Builder
	b.WriteString(intro + "\n")
	for _, r := range recs {
		b.WriteString(ZoneLine(zone, r) + "\n")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	io.WriteString(m.Out, b.String())
}

// ZoneLine returns r, a record of zone, as one line of zone file syntax
// with its fully qualified name: `_acme-challenge.example.com. 60 IN TXT
// "value"`. A TXT value is quoted, with quotes and backslashes escaped.
func ZoneLine(zone string, r libdns.Record) string {
	rr := r.RR()
	data := rr.Data
	if rr.Type == "TXT" {
		data = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(data) + `"`
	}
	return fmt.Sprintf("%s %d IN %s %s", libdns.AbsoluteName(rr.Name, zone), int64(rr.TTL/time.Second), rr.Type, data)
}
