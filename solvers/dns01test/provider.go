// Package dns01test provides libdns providers for tests and examples of
// dns-01: [Provider] writes TXT records into a mock DNS server, such as the
// one tlsmint's in-process test CA runs, and can delay their visibility to
// exercise propagation waits.
package dns01test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/libdns/libdns"
)

// TXTServer is a DNS server whose TXT records can be changed directly. The
// test CA's mock DNS server implements it.
type TXTServer interface {
	// AddTXT adds one TXT record with value at name.
	AddTXT(name, value string)
	// DeleteTXT deletes one TXT record of name with exactly value and
	// reports whether there was one.
	DeleteTXT(name, value string) bool
	// TXT returns the TXT values at name.
	TXT(name string) []string
}

// Provider is a libdns provider (RecordAppender and RecordDeleter) for TXT
// records over a [TXTServer]. Names are made absolute with the zone given to
// each call. Deletion follows libdns: a record is deleted only if its name,
// type and value match exactly (an empty value matches every value at the
// name); TTLs are not kept by the server, so they are not compared.
//
// With Delay set, appended records become visible only after Delay; a record
// deleted before then never appears.
//
// Its fields must not change after first use. It is safe for concurrent use.
type Provider struct {
	// Server receives the records. Required.
	Server TXTServer
	// Delay is how long an appended record stays invisible. Zero means it
	// is visible at once.
	Delay time.Duration

	mu      sync.Mutex
	pending map[pendingKey][]*time.Timer
}

type pendingKey struct{ name, value string }

// AppendRecords implements [libdns.RecordAppender]. Only TXT records are
// accepted.
func (p *Provider) AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if p.Server == nil {
		return nil, errors.New("dns01test: no Server")
	}
	var out []libdns.Record
	for _, r := range recs {
		rr := r.RR()
		if rr.Type != "TXT" {
			return out, fmt.Errorf("dns01test: record type %q not supported", rr.Type)
		}
		name := absolute(rr.Name, zone)
		if p.Delay > 0 {
			p.later(name, rr.Data)
		} else {
			p.Server.AddTXT(name, rr.Data)
		}
		out = append(out, libdns.TXT{Name: rr.Name, TTL: rr.TTL, Text: rr.Data})
	}
	return out, nil
}

// later makes a record visible after p.Delay.
func (p *Provider) later(name, value string) {
	key := pendingKey{name, value}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.pending == nil {
		p.pending = make(map[pendingKey][]*time.Timer)
	}
	var t *time.Timer
	t = time.AfterFunc(p.Delay, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		timers := p.pending[key]
		for i, x := range timers {
			if x == t {
				p.pending[key] = append(timers[:i:i], timers[i+1:]...)
				p.Server.AddTXT(name, value)
				return
			}
		}
		// Deleted before it became visible.
	})
	p.pending[key] = append(p.pending[key], t)
}

// DeleteRecords implements [libdns.RecordDeleter]. It returns the records it
// deleted, including records still waiting to become visible.
func (p *Provider) DeleteRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if p.Server == nil {
		return nil, errors.New("dns01test: no Server")
	}
	var out []libdns.Record
	for _, r := range recs {
		rr := r.RR()
		if rr.Type != "" && rr.Type != "TXT" {
			continue
		}
		name := absolute(rr.Name, zone)
		values := []string{rr.Data}
		if rr.Data == "" {
			values = p.Server.TXT(name)
			p.mu.Lock()
			for k := range p.pending {
				if k.name == name {
					values = append(values, k.value)
				}
			}
			p.mu.Unlock()
		}
		for _, v := range values {
			if p.deletePending(name, v) || p.Server.DeleteTXT(name, v) {
				out = append(out, libdns.TXT{Name: rr.Name, TTL: rr.TTL, Text: v})
			}
		}
	}
	return out, nil
}

// deletePending cancels one record that is not yet visible.
func (p *Provider) deletePending(name, value string) bool {
	key := pendingKey{name, value}
	p.mu.Lock()
	defer p.mu.Unlock()
	timers := p.pending[key]
	if len(timers) == 0 {
		return false
	}
	timers[0].Stop()
	if len(timers) == 1 {
		delete(p.pending, key)
	} else {
		p.pending[key] = timers[1:]
	}
	return true
}

// absolute returns the fully qualified form of a libdns record name in zone,
// without the trailing dot.
func absolute(name, zone string) string {
	return strings.TrimSuffix(libdns.AbsoluteName(name, zone), ".")
}
