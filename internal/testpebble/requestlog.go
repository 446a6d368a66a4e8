package testpebble

import (
	"sync"
	"time"
)

// requestLogSize is how many requests [CA.RequestLog] keeps.
const requestLogSize = 10000

// Request is one request that reached a [CA], as [CA.RequestLog] reports it.
type Request struct {
	// Time is when the request reached the CA's handler, by the local
	// clock (with its monotonic reading).
	Time time.Time
	// Endpoint is the endpoint's name, as for [CA.Requests].
	Endpoint string
	// Method is the HTTP method.
	Method string
	// Path is the URL path.
	Path string
	// Status is the HTTP status of the answer, whoever gave it (Pebble, a
	// fault of [CA.SetDown] or [CA.RateLimit], or [Options.Wrap]); zero
	// while the request is still being answered.
	Status int
}

// RequestLog returns the last 10,000 requests that reached the CA, oldest
// first, including those answered by faults or by [Options.Wrap] and those
// to the management paths. A request is logged when it arrives and its
// Status is filled in when it has been answered. Connections refused under
// [Refuse] never reach the CA and are not logged. [CA.ResetCounts] does not
// clear the log: filter by [Request.Time] instead, for example to check that
// nothing reached the CA before a Retry-After expired.
func (c *CA) RequestLog() []Request { return c.reqLog.snapshot() }

// requestLog is a ring of the last requests. Its zero value keeps nothing;
// use newRequestLog.
type requestLog struct {
	mu      sync.Mutex
	entries []logEntry // ring; entries[seq%cap] holds request seq
	size    int        // capacity
	next    uint64     // sequence number of the next request
}

type logEntry struct {
	seq uint64
	req Request
}

func newRequestLog(size int) requestLog {
	return requestLog{size: size}
}

// add logs r and returns its sequence number, for finish.
func (l *requestLog) add(r Request) uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	seq := l.next
	l.next++
	if len(l.entries) < l.size {
		l.entries = append(l.entries, logEntry{seq, r})
	} else if l.size > 0 {
		l.entries[seq%uint64(l.size)] = logEntry{seq, r}
	}
	return seq
}

// finish records the status of request seq, unless it has left the ring.
func (l *requestLog) finish(seq uint64, status int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.size == 0 {
		return
	}
	if e := &l.entries[seq%uint64(l.size)]; e.seq == seq {
		e.req.Status = status
	}
}

// snapshot returns the logged requests, oldest first.
func (l *requestLog) snapshot() []Request {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Request, 0, len(l.entries))
	start := 0
	if len(l.entries) == l.size && l.size > 0 {
		start = int(l.next % uint64(l.size))
	}
	for i := range l.entries {
		out = append(out, l.entries[(start+i)%len(l.entries)].req)
	}
	return out
}
