package relay

import (
	"context"
	"time"

	"github.com/tlsmint/tlsmint/acme"
)

// SetClock makes s read the time from now, for tests of what happens
// over days and years.
func SetClock(s *Server, now func() time.Time) { s.now = now }

// RecordIssuance records cert as the upstream's certificate for the
// order with the CSR, through the path a background issuance records its
// outcome by (finishIssue), for benchmarks that simulate a year of
// orders without asking a CA for each.
func RecordIssuance(ctx context.Context, s *Server, orderID string, csr []byte, cert *acme.Certificate, up *Upstream) error {
	o := new(orderRecord)
	if err := s.load(ctx, keyOrders+orderID, o); err != nil {
		return err
	}
	o.Status, o.CSR, o.Processing = acme.StatusProcessing, csr, s.now().UTC()
	if err := s.save(ctx, keyOrders+orderID, o); err != nil {
		return err
	}
	s.finishIssue(o, cert, up, nil)
	return nil
}

// MarkProcessing leaves an order as a process that died during its
// issuance leaves it: processing with the CSR, nothing running it.
func MarkProcessing(ctx context.Context, s *Server, orderID string, csr []byte) error {
	o := new(orderRecord)
	if err := s.load(ctx, keyOrders+orderID, o); err != nil {
		return err
	}
	o.Status, o.CSR, o.Processing = acme.StatusProcessing, csr, s.now().UTC()
	return s.save(ctx, keyOrders+orderID, o)
}
