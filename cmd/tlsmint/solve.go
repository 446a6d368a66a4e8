package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/solvers"
)

// solverFlags are the challenge options of obtain and renew.
type solverFlags struct {
	http, tlsALPN  string
	dns            bool
	dnsPersist     bool
	wildcardPolicy bool
	dnsResolvers   []string
	dnsPort        int
	dnsTimeout     time.Duration
}

func (s *solverFlags) add(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&s.http, "http", "", "solve http-01 with a built-in server on this address, such as :80 (env TLSMINT_HTTP)")
	f.StringVar(&s.tlsALPN, "tls-alpn", "", "solve tls-alpn-01 with a built-in server on this address, such as :443 (env TLSMINT_TLS_ALPN)")
	f.BoolVar(&s.dns, "dns", false, "solve dns-01 by hand: print the TXT record to create and wait until it is visible")
	f.BoolVar(&s.dnsPersist, "dns-persist", false, "solve dns-persist-01 by hand: print the TXT record to create once (it stays for every renewal) and wait until it is visible")
	f.BoolVar(&s.wildcardPolicy, "wildcard-policy", false, "with --dns-persist: put policy=wildcard in every record, so it also validates *.NAME and subdomains (automatic for a wildcard and for a name whose wildcard is in the order)")
	f.StringSliceVar(&s.dnsResolvers, "dns-resolver", nil, "with --dns or --dns-persist: recursive resolver host:port for finding the zone (default /etc/resolv.conf's)")
	f.IntVar(&s.dnsPort, "dns-port", 0, "with --dns or --dns-persist: port of the zone's authoritative nameservers (default 53)")
	f.DurationVar(&s.dnsTimeout, "dns-timeout", 10*time.Minute, "with --dns or --dns-persist: how long to wait for the record to be visible")
}

// checkWildcards refuses, before anything is ordered, a wildcard that no
// solver of the flags can validate: only dns-01 and dns-persist-01 can.
func (s *solverFlags) checkWildcards(names []string) error {
	if s.dns || s.dnsPersist {
		return nil
	}
	for _, n := range names {
		if strings.HasPrefix(n, "*.") {
			return usagef("%s is a wildcard, which only DNS validation proves: pass --dns or --dns-persist (--http and --tls-alpn cannot)", n)
		}
	}
	return nil
}

// solvers is what the flags start: the solvers for Obtain, their
// preference, and a function that stops the servers.
type solverSet struct {
	solvers map[string]acme.Solver
	types   []string
	stop    func()
	persist *manualPersist // with --dns-persist
}

// start listens on the challenge addresses. Nothing is ordered if a
// listener cannot be opened. names are the names of the order.
func (s *solverFlags) start(a *app, p *progress, names []string) (*solverSet, error) {
	set := &solverSet{solvers: map[string]acme.Solver{}}
	var stops []func()
	set.stop = func() {
		for _, f := range stops {
			f()
		}
	}
	fail := func(err error) (*solverSet, error) {
		set.stop()
		return nil, err
	}
	for _, l := range []struct{ flag, addr string }{{"--http", s.http}, {"--tls-alpn", s.tlsALPN}} {
		if l.addr == "" {
			continue
		}
		if err := checkListenAddr(l.addr); err != nil {
			return fail(usagef("%s %q: %v: want HOST:PORT or :PORT, such as :80", l.flag, l.addr, err))
		}
	}
	if s.wildcardPolicy && !s.dnsPersist {
		return fail(usagef("--wildcard-policy is for dns-persist-01 records: pass --dns-persist too"))
	}
	if s.dnsPersist {
		set.persist = newManualPersist(s, names, a.stderr, p)
		set.solvers[acme.ChallengeDNSPersist01] = announce(set.persist, p, acme.ChallengeDNSPersist01)
		set.types = append(set.types, acme.ChallengeDNSPersist01)
	}
	if s.dns {
		d := &solvers.DNS01{
			Provider:           &solvers.ManualDNS{Out: a.stderr},
			Resolvers:          s.dnsResolvers,
			NameserverPort:     s.dnsPort,
			PropagationTimeout: s.dnsTimeout,
		}
		set.solvers[acme.ChallengeDNS01] = announce(d, p, acme.ChallengeDNS01)
		set.types = append(set.types, acme.ChallengeDNS01)
	}
	if s.http != "" {
		ln, err := net.Listen("tcp", s.http)
		if err != nil {
			return fail(listenError("http-01", s.http, err))
		}
		h := &solvers.HTTP01{}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		stops = append(stops, func() { srv.Close() })
		set.solvers[acme.ChallengeHTTP01] = announce(h, p, acme.ChallengeHTTP01)
		set.types = append(set.types, acme.ChallengeHTTP01)
	}
	if s.tlsALPN != "" {
		ln, err := net.Listen("tcp", s.tlsALPN)
		if err != nil {
			return fail(listenError("tls-alpn-01", s.tlsALPN, err))
		}
		t := &solvers.TLSALPN01{}
		tl := tls.NewListener(ln, t.TLSConfig())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			serveHandshakes(tl)
		}()
		stops = append(stops, func() { tl.Close(); wg.Wait() })
		set.solvers[acme.ChallengeTLSALPN01] = announce(t, p, acme.ChallengeTLSALPN01)
		set.types = append(set.types, acme.ChallengeTLSALPN01)
	}
	if len(set.solvers) == 0 {
		return fail(usagef("no way to solve a challenge: pass --http :80, --tls-alpn :443, --dns or --dns-persist"))
	}
	return set, nil
}

// checkListenAddr checks a listen address before anything listens: a
// host (possibly empty) and a port number or service name.
func checkListenAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New(strings.TrimPrefix(err.Error(), "address "+addr+": "))
	}
	if port == "" {
		return errors.New("no port")
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("port %q is not a port number", port)
	}
	return nil
}

// listenError explains a listen failure of a challenge server.
func listenError(kind, addr string, err error) error {
	return explainListen(kind, addr, err, "another server listens there; stop it, or solve through it")
}

// explainListen explains a failure to listen on addr for what: a port
// below 1024 needs privileges, and for an address in use, inUse advises.
func explainListen(what, addr string, err error, inUse string) error {
	msg := fmt.Sprintf("listening on %s for %s: %v", addr, what, err)
	if errors.Is(err, fs.ErrPermission) {
		msg += ": ports below 1024 need root or CAP_NET_BIND_SERVICE"
	} else if errors.Is(err, syscall.EADDRINUSE) {
		msg += ": " + inUse
	}
	return errors.New(msg)
}

// serveHandshakes completes the TLS handshake of every connection (all a
// tls-alpn-01 validation needs) and closes it.
func serveHandshakes(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			if tc, ok := c.(*tls.Conn); ok {
				tc.Handshake()
			}
		}()
	}
}

// announced reports each presented challenge as a progress step, and
// forwards Wait when the solver has one.
type announced struct {
	acme.Solver
	p    *progress
	kind string
}

type announcedWaiter struct {
	announced
	w acme.Waiter
}

func (s announced) Present(ctx context.Context, ch acme.Challenge) error {
	name := ch.Identifier.Value
	if ch.Wildcard {
		name = "*." + name
	}
	s.p.step("validating %s via %s", name, s.kind)
	return s.Solver.Present(ctx, ch)
}

func (s announcedWaiter) Wait(ctx context.Context, ch acme.Challenge) error {
	if _, ok := s.w.(*manualPersist); !ok { // which says when it waits
		s.p.step("waiting until the TXT record of %s is visible", ch.Identifier.Value)
	}
	return s.w.Wait(ctx, ch)
}

func announce(s acme.Solver, p *progress, kind string) acme.Solver {
	a := announced{Solver: s, p: p, kind: kind}
	if w, ok := s.(acme.Waiter); ok {
		return announcedWaiter{announced: a, w: w}
	}
	return a
}
