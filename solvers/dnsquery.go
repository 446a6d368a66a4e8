package solvers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// maxCNAMEHops bounds how many CNAMEs are followed from _acme-challenge.
const maxCNAMEHops = 8

// queryTimeout bounds one DNS exchange with one server.
const queryTimeout = 5 * time.Second

// resolvConf is where the system's resolvers are read from when
// DNS01.Resolvers is empty.
const resolvConf = "/etc/resolv.conf"

// querier sends DNS queries to chosen servers.
type querier struct {
	servers []string // host:port
}

// exchange asks each server in turn until one answers with NOERROR or
// NXDOMAIN. UDP is tried first; a truncated answer or a UDP failure is
// retried over TCP.
func (q querier) exchange(ctx context.Context, name string, qtype uint16, recurse bool, servers []string) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = recurse
	m.SetEdns0(1232, false)
	var errs []error
	for _, srv := range servers {
		r, err := exchangeOne(ctx, m, srv)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if r.Rcode != dns.RcodeSuccess && r.Rcode != dns.RcodeNameError {
			errs = append(errs, fmt.Errorf("%s: %s %s: %s", srv, dns.TypeToString[qtype], name, dns.RcodeToString[r.Rcode]))
			continue
		}
		return r, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(errs) == 0 {
		return nil, errors.New("no DNS servers to ask")
	}
	return nil, fmt.Errorf("DNS query %s %s: %w", dns.TypeToString[qtype], name, errors.Join(errs...))
}

func exchangeOne(ctx context.Context, m *dns.Msg, srv string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	udp := &dns.Client{Net: "udp", UDPSize: 1232}
	r, _, err := udp.ExchangeContext(ctx, m, srv)
	if err == nil && !r.Truncated {
		return r, nil
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%s: %w", srv, ctx.Err())
	}
	tcp := &dns.Client{Net: "tcp"}
	r, _, err = tcp.ExchangeContext(ctx, m, srv)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", srv, err)
	}
	return r, nil
}

// followCNAME returns the name that a TXT record at name must really be
// written to: name itself, or the end of the CNAME chain that starts there.
func (q querier) followCNAME(ctx context.Context, name string) (string, error) {
	name = canonical(name)
	seen := map[string]bool{name: true}
	for range maxCNAMEHops {
		r, err := q.exchange(ctx, name, dns.TypeCNAME, true, q.servers)
		if err != nil {
			return "", err
		}
		target := ""
		for _, rr := range r.Answer {
			if c, ok := rr.(*dns.CNAME); ok && canonical(c.Hdr.Name) == name {
				target = canonical(c.Target)
			}
		}
		if target == "" {
			return name, nil
		}
		if seen[target] {
			return "", fmt.Errorf("CNAME loop at %s", target)
		}
		seen[target] = true
		name = target
	}
	return "", fmt.Errorf("more than %d CNAMEs from %s", maxCNAMEHops, name)
}

// findZone returns the apex of the zone that holds name, by asking for its
// SOA and walking up towards the root.
func (q querier) findZone(ctx context.Context, name string) (string, error) {
	name = canonical(name)
	for n := name; n != "."; {
		r, err := q.exchange(ctx, n, dns.TypeSOA, true, q.servers)
		if err != nil {
			return "", err
		}
		for _, rr := range r.Answer {
			if soa, ok := rr.(*dns.SOA); ok && canonical(soa.Hdr.Name) == n {
				return n, nil
			}
		}
		for _, rr := range r.Ns {
			if soa, ok := rr.(*dns.SOA); ok && dns.IsSubDomain(canonical(soa.Hdr.Name), name) && canonical(soa.Hdr.Name) != "." {
				return canonical(soa.Hdr.Name), nil
			}
		}
		i, end := dns.NextLabel(n, 0)
		if end {
			break
		}
		n = n[i:]
	}
	return "", fmt.Errorf("no zone (SOA) found for %s", name)
}

// nameservers returns the addresses (host:port) of the zone's authoritative
// nameservers.
func (q querier) nameservers(ctx context.Context, zone string, port int) ([]string, error) {
	r, err := q.exchange(ctx, zone, dns.TypeNS, true, q.servers)
	if err != nil {
		return nil, err
	}
	glue := map[string][]string{}
	for _, rr := range r.Extra {
		switch a := rr.(type) {
		case *dns.A:
			glue[canonical(a.Hdr.Name)] = append(glue[canonical(a.Hdr.Name)], a.A.String())
		case *dns.AAAA:
			glue[canonical(a.Hdr.Name)] = append(glue[canonical(a.Hdr.Name)], a.AAAA.String())
		}
	}
	p := strconv.Itoa(port)
	var addrs []string
	for _, rr := range r.Answer {
		ns, ok := rr.(*dns.NS)
		if !ok {
			continue
		}
		host := canonical(ns.Ns)
		ips := glue[host]
		if len(ips) == 0 {
			if ips, err = q.addresses(ctx, host); err != nil {
				continue
			}
		}
		for _, ip := range ips {
			addrs = append(addrs, net.JoinHostPort(ip, p))
		}
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("no authoritative nameservers found for zone %s", zone)
	}
	return addrs, nil
}

// addresses resolves host's A and AAAA records through the resolvers.
func (q querier) addresses(ctx context.Context, host string) ([]string, error) {
	var ips []string
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		r, err := q.exchange(ctx, host, t, true, q.servers)
		if err != nil {
			continue
		}
		for _, rr := range r.Answer {
			switch a := rr.(type) {
			case *dns.A:
				ips = append(ips, a.A.String())
			case *dns.AAAA:
				ips = append(ips, a.AAAA.String())
			}
		}
	}
	if len(ips) == 0 {
		return nil, fmt.Errorf("no address for nameserver %s", host)
	}
	return ips, nil
}

// hasTXT reports whether server answers name with a TXT record whose value
// is exactly value, among every record of the answer (not only the first
// maxTXTRecords that txt keeps: stale records may come first).
func (q querier) hasTXT(ctx context.Context, server, name, value string) (bool, error) {
	r, err := q.exchange(ctx, name, dns.TypeTXT, false, []string{server})
	if err != nil {
		return false, err
	}
	for _, rr := range r.Answer {
		if t, ok := rr.(*dns.TXT); ok && canonical(t.Hdr.Name) == canonical(name) && strings.Join(t.Txt, "") == value {
			return true, nil
		}
	}
	return false, nil
}

// txt returns the values (each record's character-strings joined) of the
// TXT records server answers for name, at most maxTXTRecords of them.
func (q querier) txt(ctx context.Context, server, name string) ([]string, error) {
	r, err := q.exchange(ctx, name, dns.TypeTXT, false, []string{server})
	if err != nil {
		return nil, err
	}
	var values []string
	for _, rr := range r.Answer {
		if t, ok := rr.(*dns.TXT); ok && canonical(t.Hdr.Name) == canonical(name) {
			values = append(values, strings.Join(t.Txt, ""))
			if len(values) == maxTXTRecords {
				break
			}
		}
	}
	return values, nil
}

// maxTXTRecords bounds the TXT records read at one name.
const maxTXTRecords = 64

// systemResolvers returns the nameservers of /etc/resolv.conf.
func systemResolvers() ([]string, error) {
	cfg, err := dns.ClientConfigFromFile(resolvConf)
	if err != nil {
		return nil, fmt.Errorf("reading system resolvers: %w", err)
	}
	var out []string
	for _, s := range cfg.Servers {
		out = append(out, net.JoinHostPort(s, cfg.Port))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no nameservers in %s", resolvConf)
	}
	return out, nil
}

// canonical returns name in lower case with one trailing dot.
func canonical(name string) string {
	return strings.ToLower(dns.Fqdn(name))
}
