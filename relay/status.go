package relay

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tlsmint/tlsmint/acme"
	"github.com/tlsmint/tlsmint/record"
)

// keyARIWindows holds, per certificate id, the upstream's renewal window
// as last passed downstream (an ariWindow), for Server.Certificates.
const keyARIWindows = keyRoot + "ari-window/"

// An ariWindow is the upstream's last answer to renewalInfo for one
// certificate.
type ariWindow struct {
	Start          time.Time `json:"start"`
	End            time.Time `json:"end"`
	ExplanationURL string    `json:"explanation_url,omitempty"`
	Fetched        time.Time `json:"fetched"`
}

// noteARIWindow remembers the upstream's window for a certificate when it
// differs from the one remembered. It is what the status page shows; a
// failure leaves the older window there and is logged.
func (s *Server) noteARIWindow(ctx context.Context, certID string, ri *acme.RenewalInfo) {
	key := keyARIWindows + certID
	var old ariWindow
	err := s.load(ctx, key, &old)
	if err == nil && old.Start.Equal(ri.SuggestedWindow.Start) && old.End.Equal(ri.SuggestedWindow.End) && old.ExplanationURL == ri.ExplanationURL {
		return
	}
	w := ariWindow{Start: ri.SuggestedWindow.Start, End: ri.SuggestedWindow.End, ExplanationURL: ri.ExplanationURL, Fetched: s.now()}
	if err := s.save(ctx, key, w); err != nil {
		s.logger().Warn("relay: storing the upstream renewal window failed", "cert", certID, "err", err)
	}
}

// Certificates lists the certificates the relay issued to its downstream
// clients, for a status page (it is a statuspage.CertificateSource): per
// certificate its names (Name is the first), its tenant, the upstream's
// directory URL as Issuer (the upstream's name when it is no longer
// configured), serial and validity, whether it was revoked through the
// relay, and the upstream's renewal window (RFC 9773) as last passed to a
// client's renewalInfo request (zero until a client asked). A certificate
// is left out once the same tenant obtained a newer one for the same set
// of names (a renewal, with or without "replaces"). Sorted by expiry.
//
// It reads the index of current certificates (one record per tenant and
// set of names, kept as certificates are issued and revoked) and the
// renewal window of each: a List and two Loads per row, whatever the
// number of certificates ever issued. The first call on a storage
// written before the index existed builds it from the certificates
// stored. A row that cannot be read is left out, and the first such
// error is returned with the rest.
func (s *Server) Certificates(ctx context.Context) ([]record.Certificate, error) {
	s.init()
	if s.initErr != nil {
		return nil, s.initErr
	}
	if err := s.buildCurrent(ctx); err != nil {
		return nil, fmt.Errorf("relay: building the index of current certificates: %w", err)
	}
	keys, err := s.Storage.List(ctx, keyCurrent)
	if err != nil {
		return nil, fmt.Errorf("relay: listing certificates: %w", err)
	}
	var firstErr error
	out := make([]record.Certificate, 0, len(keys))
	for _, k := range keys {
		var r currentRecord
		if err := s.load(ctx, k, &r); err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if firstErr == nil && !isNotFound(err) {
				firstErr = fmt.Errorf("relay: reading %s: %w", k, err)
			}
			continue
		}
		info := record.Certificate{
			Names: r.Names, Issuer: r.Upstream, Tenant: r.Tenant, Revoked: r.Revoked,
			NotBefore: r.NotBefore, NotAfter: r.NotAfter, Stored: true, Serial: r.Serial,
		}
		if len(info.Names) > 0 {
			info.Name = info.Names[0]
		}
		if up := s.upstream(r.Upstream); up != nil && up.Client.DirectoryURL != "" {
			info.Issuer = up.Client.DirectoryURL
		}
		var w ariWindow
		if err := s.load(ctx, keyARIWindows+r.Cert, &w); err == nil {
			info.ARIWindowStart, info.ARIWindowEnd, info.ARIExplanationURL = w.Start, w.End, w.ExplanationURL
		} else if firstErr == nil && !isNotFound(err) && ctx.Err() == nil {
			firstErr = fmt.Errorf("relay: reading the renewal window of certificate %s: %w", r.Cert, err)
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b record.Certificate) int {
		return cmp.Or(a.NotAfter.Compare(b.NotAfter), strings.Compare(a.Name, b.Name), strings.Compare(a.Tenant, b.Tenant), strings.Compare(a.Serial, b.Serial))
	})
	return out, firstErr
}

// sortedNames returns the identifiers' values, sorted.
func sortedNames(ids []acme.Identifier) []string {
	out := names(ids)
	slices.Sort(out)
	return out
}
