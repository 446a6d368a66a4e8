package testpebble

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// dnsTTL is the TTL of every record the mock DNS server answers with.
const dnsTTL = 60

// maxCNAMEChain bounds how many CNAME hops the server follows in one answer.
const maxCNAMEChain = 8

// DNSServer is a mock DNS server on a loopback port. It behaves like a small
// recursive resolver with a few authoritative zones:
//
//   - every A query is answered with 127.0.0.1, whatever the name;
//   - every AAAA query is answered with NOERROR and no records, so that
//     clients (Pebble's validation authority included) connect over IPv4;
//   - TXT records come from [DNSServer.AddTXT];
//   - a CNAME set by [DNSServer.SetCNAME] is answered for the name, and for
//     any other query type the chain is followed and the target's records are
//     appended, as a recursive resolver would do;
//   - a zone added by [DNSServer.AddZone] has an SOA and an NS record
//     (ns1.<zone>.) at its apex, and empty answers for names inside the
//     zone carry the zone's SOA in the authority section.
//
// It serves DNS over TCP (which Pebble's validation authority uses) and, when
// the same port is free for UDP, over UDP as well.
//
// A DNSServer is safe for concurrent use.
type DNSServer struct {
	addr    string
	servers []*dns.Server
	done    []chan struct{}

	mu    sync.RWMutex
	txt   map[string][]string // canonical name -> values, in insertion order
	cname map[string]string   // canonical name -> canonical target
	zones map[string]bool     // canonical zone apexes

	closeOnce sync.Once
	closeErr  error
}

// NewDNSServer starts a mock DNS server on a free port of 127.0.0.1. Close it
// with [DNSServer.Close]. [New] starts one for each CA; this constructor is
// for tests that need DNS alone.
func NewDNSServer() (*DNSServer, error) {
	d := &DNSServer{
		txt:   make(map[string][]string),
		cname: make(map[string]string),
		zones: make(map[string]bool),
	}
	tcp, udp, err := listenDNS()
	if err != nil {
		return nil, err
	}
	d.addr = tcp.Addr().String()

	handler := dns.HandlerFunc(d.serveDNS)
	d.start(&dns.Server{Listener: tcp, Handler: handler})
	if udp != nil {
		d.start(&dns.Server{PacketConn: udp, Handler: handler})
	}
	return d, nil
}

// listenDNS opens a TCP listener on a free loopback port and, if possible, a
// UDP socket on the same port. The UDP socket is nil when no port could be
// found free for both after a few attempts.
func listenDNS() (net.Listener, net.PacketConn, error) {
	var lastTCP net.Listener
	for range 10 {
		tcp, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, nil, fmt.Errorf("testpebble: dns: listen tcp: %w", err)
		}
		port := tcp.Addr().(*net.TCPAddr).Port
		udp, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			if lastTCP != nil {
				_ = lastTCP.Close()
			}
			return tcp, udp, nil
		}
		if lastTCP != nil {
			_ = lastTCP.Close()
		}
		lastTCP = tcp
	}
	return lastTCP, nil, nil
}

// start runs srv in a goroutine and returns once it accepts queries.
func (d *DNSServer) start(srv *dns.Server) {
	started := make(chan struct{})
	done := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go func() {
		defer close(done)
		_ = srv.ActivateAndServe()
	}()
	d.servers = append(d.servers, srv)
	d.done = append(d.done, done)
	select {
	case <-started:
	case <-done:
	}
}

// Addr returns the server's address, "127.0.0.1:PORT". The same port serves
// TCP and, in nearly all cases, UDP.
func (d *DNSServer) Addr() string { return d.addr }

// Close stops the server and waits for its goroutines. Calling it more than
// once returns the first result.
func (d *DNSServer) Close() error {
	d.closeOnce.Do(func() {
		var errs []error
		for _, srv := range d.servers {
			if err := srv.Shutdown(); err != nil {
				errs = append(errs, err)
			}
		}
		for _, done := range d.done {
			<-done
		}
		if err := errors.Join(errs...); err != nil {
			d.closeErr = fmt.Errorf("testpebble: dns: %w", err)
		}
	})
	return d.closeErr
}

// canonicalName returns name in lower case with a trailing dot.
func canonicalName(name string) string {
	return strings.ToLower(dns.Fqdn(name))
}

// AddTXT adds a TXT record with value to name. The name is matched case
// insensitively, with or without a trailing dot. Adding a value that is
// already present adds a second copy.
func (d *DNSServer) AddTXT(name, value string) {
	key := canonicalName(name)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.txt[key] = append(d.txt[key], value)
}

// DeleteTXT deletes one TXT record of name whose value is exactly value, and
// reports whether there was one.
func (d *DNSServer) DeleteTXT(name, value string) bool {
	key := canonicalName(name)
	d.mu.Lock()
	defer d.mu.Unlock()
	values := d.txt[key]
	for i, v := range values {
		if v == value {
			values = append(values[:i:i], values[i+1:]...)
			if len(values) == 0 {
				delete(d.txt, key)
			} else {
				d.txt[key] = values
			}
			return true
		}
	}
	return false
}

// TXT returns a copy of the TXT values of name (no CNAME is followed), in the
// order they were added, or nil if there are none.
func (d *DNSServer) TXT(name string) []string {
	key := canonicalName(name)
	d.mu.RLock()
	defer d.mu.RUnlock()
	values := d.txt[key]
	if len(values) == 0 {
		return nil
	}
	return append([]string(nil), values...)
}

// SetCNAME makes name an alias of target. An empty target removes the alias.
func (d *DNSServer) SetCNAME(name, target string) {
	key := canonicalName(name)
	d.mu.Lock()
	defer d.mu.Unlock()
	if target == "" {
		delete(d.cname, key)
		return
	}
	d.cname[key] = canonicalName(target)
}

// AddZone makes the server authoritative for zone: its apex answers SOA and
// NS queries, and empty answers for names inside it carry its SOA in the
// authority section, so that zone finders walking up the name find it.
func (d *DNSServer) AddZone(zone string) {
	key := canonicalName(zone)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.zones[key] = true
}

// serveDNS answers one query.
func (d *DNSServer) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.RecursionAvailable = true
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeNotImplemented
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	d.mu.RLock()
	m.Answer, m.Ns, m.Extra = d.resolve(q)
	m.Authoritative = d.zoneOf(canonicalName(q.Name)) != ""
	d.mu.RUnlock()
	_ = w.WriteMsg(m)
}

// resolve builds the answer, authority and additional sections for q. The
// caller holds d.mu for reading.
func (d *DNSServer) resolve(q dns.Question) (answer, authority, extra []dns.RR) {
	owner := q.Name
	key := canonicalName(owner)
	if q.Qtype != dns.TypeCNAME {
		for range maxCNAMEChain {
			target, ok := d.cname[key]
			if !ok {
				break
			}
			answer = append(answer, &dns.CNAME{Hdr: header(owner, dns.TypeCNAME), Target: target})
			owner, key = target, target
		}
	}
	aliases := len(answer)

	switch q.Qtype {
	case dns.TypeA:
		answer = append(answer, &dns.A{Hdr: header(owner, dns.TypeA), A: net.IPv4(127, 0, 0, 1).To4()})
	case dns.TypeAAAA:
		// Deliberately empty: clients fall back to IPv4.
	case dns.TypeTXT:
		for _, v := range d.txt[key] {
			answer = append(answer, &dns.TXT{Hdr: header(owner, dns.TypeTXT), Txt: splitTXT(v)})
		}
	case dns.TypeCNAME:
		if target, ok := d.cname[key]; ok {
			answer = append(answer, &dns.CNAME{Hdr: header(owner, dns.TypeCNAME), Target: target})
		}
	case dns.TypeSOA:
		if d.zones[key] {
			answer = append(answer, soa(key))
		}
	case dns.TypeNS:
		if d.zones[key] {
			ns := "ns1." + key
			answer = append(answer, &dns.NS{Hdr: header(owner, dns.TypeNS), Ns: ns})
			extra = append(extra, &dns.A{Hdr: header(ns, dns.TypeA), A: net.IPv4(127, 0, 0, 1).To4()})
		}
	}

	if len(answer) == aliases {
		if zone := d.zoneOf(key); zone != "" {
			authority = append(authority, soa(zone))
		}
	}
	return answer, authority, extra
}

// zoneOf returns the closest zone that contains name (canonical), or "".
// The caller holds d.mu for reading.
func (d *DNSServer) zoneOf(name string) string {
	for n := name; n != "" && n != "."; {
		if d.zones[n] {
			return n
		}
		i := strings.IndexByte(n, '.')
		if i < 0 {
			break
		}
		n = n[i+1:]
	}
	return ""
}

// header returns an IN record header with the package's TTL.
func header(name string, rrtype uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: rrtype, Class: dns.ClassINET, Ttl: dnsTTL}
}

// soa returns the SOA record of zone (canonical).
func soa(zone string) *dns.SOA {
	return &dns.SOA{
		Hdr:     header(zone, dns.TypeSOA),
		Ns:      "ns1." + zone,
		Mbox:    "hostmaster." + zone,
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  dnsTTL,
	}
}

// splitTXT splits v into the 255-octet character strings of one TXT record.
func splitTXT(v string) []string {
	if len(v) <= 255 {
		return []string{v}
	}
	var parts []string
	for len(v) > 255 {
		parts = append(parts, v[:255])
		v = v[255:]
	}
	return append(parts, v)
}
