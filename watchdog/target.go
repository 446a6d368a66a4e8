package watchdog

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/tlsmint/tlsmint/autotls"
	"github.com/tlsmint/tlsmint/record"
)

// A Target is one endpoint and server name to probe.
type Target struct {
	// Addr is the address to dial, "host:port".
	Addr string
	// ServerName is the name sent as SNI and the name the served leaf
	// must cover. An IP address is not sent (TLS has no SNI for it) and
	// must be among the leaf's IP addresses. Empty means the host of
	// Addr; with no host either (":443"), no SNI is sent and the name is
	// not checked.
	ServerName string
	// Roots verifies this target's chain. Nil means [Watchdog.Roots].
	Roots *x509.CertPool
	// Managed ties the target to [Watchdog.Manager]: the served leaf
	// must be the certificate the Manager holds for ServerName (exact,
	// else the wildcard one label up). False means the Manager is not
	// consulted. Targets built from [Watchdog.Listeners] are managed.
	Managed bool
}

// String returns "addr (server name)" for logs and messages.
func (t Target) String() string {
	if t.ServerName == "" {
		return t.Addr
	}
	return t.Addr + " (" + t.ServerName + ")"
}

// targetKey identifies a target across rounds.
type targetKey struct {
	addr, name string
	managed    bool
}

func (t Target) key() targetKey { return targetKey{t.Addr, t.ServerName, t.Managed} }

// A Source reports the certificates a Manager holds. [*autotls.Manager]
// is one; the watchdog only reads it.
type Source interface {
	Certificates(ctx context.Context) ([]record.Certificate, error)
}

// serverName returns the normalised name to check for t: a DNS name
// (IDNA to ASCII, lower case, no trailing dot), an IP address in its
// canonical form, or "" when there is none.
func serverName(t Target) (name string, ip bool, err error) {
	host, _, err := net.SplitHostPort(t.Addr)
	if err != nil {
		return "", false, fmt.Errorf("%w: address %q: %w", ErrInvalidTarget, t.Addr, err)
	}
	n := t.ServerName
	if n == "" {
		n = host
	}
	if n == "" {
		return "", false, nil
	}
	if a, err := netip.ParseAddr(strings.Trim(n, "[]")); err == nil {
		return a.Unmap().String(), true, nil
	}
	norm, err := autotls.NormalizeName(n)
	if err != nil {
		return "", false, fmt.Errorf("%w: server name %q: %w", ErrInvalidTarget, n, err)
	}
	return norm, false, nil
}

// targets returns every target of one round: each listener with each
// name to check (the configured Names, else every name the Manager holds
// a certificate for, wildcards excepted), then the configured Targets.
// infos are the Manager's certificates (nil without a Manager); err is its
// failure to list them, which still leaves the configured targets, and
// whatever the Manager did list.
func (w *Watchdog) targets(ctx context.Context) (ts []Target, infos []record.Certificate, err error) {
	if w.Manager != nil && (len(w.Listeners) > 0 || hasManaged(w.Targets)) {
		infos, err = w.Manager.Certificates(ctx)
		if err != nil {
			err = fmt.Errorf("watchdog: listing the Manager's certificates: %w", err)
		}
	}
	if len(w.Listeners) > 0 {
		names := w.Names
		if names == nil {
			names = heldNames(infos)
		}
		for _, addr := range w.Listeners {
			for _, n := range names {
				ts = append(ts, Target{Addr: addr, ServerName: n, Managed: true})
			}
		}
	}
	ts = append(ts, w.Targets...)
	return ts, infos, err
}

func hasManaged(ts []Target) bool {
	return slices.ContainsFunc(ts, func(t Target) bool { return t.Managed })
}

// heldNames returns the names the Manager holds a certificate for, sorted,
// without wildcards (no SNI can ask for "*.example.com"; list a name under
// it in Names to probe one).
func heldNames(infos []record.Certificate) []string {
	var names []string
	for _, info := range infos {
		if info.Serial == "" || strings.HasPrefix(info.Name, "*.") {
			continue
		}
		names = append(names, info.Name)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// held returns the certificate the Manager holds for name: the one managed
// under name, else the wildcard one label up; nil when there is none.
func held(infos []record.Certificate, name string) *record.Certificate {
	find := func(n string) *record.Certificate {
		for i := range infos {
			if infos[i].Name == n && infos[i].Serial != "" {
				return &infos[i]
			}
		}
		return nil
	}
	if info := find(name); info != nil {
		return info
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		return find("*." + name[i+1:])
	}
	return nil
}
