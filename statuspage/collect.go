package statuspage

import (
	"context"
	"fmt"
)

// Status gathers what the page shows, as its JSON does — the first page
// of the certificates with the counts of every state and, with Audit, the
// trail's activity, rate limits and nodes — without serving it, for a
// command or a report. Authorize does not apply: the caller decides who
// sees it. [Handler.Query] gathers another page.
func (h *Handler) Status(ctx context.Context) *Status {
	st, _ := h.status(ctx, h.now(), Query{}) // the first page has no cursor to fail
	return st
}

// Query gathers the page q selects, as Status does for the first: the
// page's certificates (each loaded), the counts of every state, Next for
// the page after, and, with Audit, the trail's sections. It fails with
// ErrBadQuery for a state, limit or cursor that is not valid.
func (h *Handler) Query(ctx context.Context, q Query) (*Status, error) {
	if !validState(q.State) {
		return nil, fmt.Errorf("%w: unknown state %.64q", ErrBadQuery, q.State)
	}
	if q.Limit > MaxLimit {
		return nil, fmt.Errorf("%w: limit %d is above %d", ErrBadQuery, q.Limit, MaxLimit)
	}
	if _, err := parseCursor(q.After); err != nil {
		return nil, err
	}
	return h.status(ctx, h.now(), q)
}
