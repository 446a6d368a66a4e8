package autotls

import (
	"context"
	"errors"
	"fmt"

	"github.com/tlsmint/tlsmint/record"
)

// An AuditQuerier is an [AuditLog] that can be queried; the Log of package
// audit is one.
type AuditQuerier interface {
	Query(ctx context.Context, f record.AuditFilter) ([]record.Audit, error)
}

// ErrNoAuditLog is returned by [Manager.Audit] when the Manager has no
// AuditLog, or one that cannot be queried.
var ErrNoAuditLog = errors.New("autotls: no queryable audit log")

// Audit returns the records of the Manager's audit trail that match f,
// oldest first (the newest f.Limit of them): its exchanges with its CAs,
// its decisions, and those of every node sharing the trail's storage. It
// asks Manager.AuditLog, which must be an [AuditQuerier] (package audit's
// Log is); otherwise it returns ErrNoAuditLog.
func (m *Manager) Audit(ctx context.Context, f record.AuditFilter) ([]record.Audit, error) {
	q, ok := m.AuditLog.(AuditQuerier)
	if !ok {
		return nil, fmt.Errorf("%w: set Manager.AuditLog to an audit.Log", ErrNoAuditLog)
	}
	return q.Query(ctx, f)
}
