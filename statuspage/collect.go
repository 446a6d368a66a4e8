package statuspage

import "context"

// Status gathers what the page shows, as its JSON does — the Manager's
// certificates with their states and, with Audit, the trail's activity,
// rate limits and nodes — without serving it, for a command or a report.
// Authorize does not apply: the caller decides who sees it.
func (h *Handler) Status(ctx context.Context) *Status {
	return h.status(ctx, h.now())
}
