package acme

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Bounds applied to every Retry-After the server sends.
const (
	// MinRetryAfter is the floor of a Retry-After: "0" or a date in the
	// past still waits this long, so a misbehaving server cannot make the
	// client spin.
	MinRetryAfter = time.Second
	// MaxRetryAfter is the cap of a Retry-After: a server asking for longer
	// is taken to mean "not today".
	MaxRetryAfter = 24 * time.Hour
)

// ParseRetryAfter parses a Retry-After header value in either of its forms:
// a number of seconds ("120") or an HTTP date ("Wed, 21 Oct 2026 07:28:00
// GMT"), relative to now. The result is clamped to [MinRetryAfter,
// MaxRetryAfter]. It reports false, with a zero duration, when v is empty or
// malformed.
func ParseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if v[0] >= '0' && v[0] <= '9' {
		secs, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			if ne, ok := err.(*strconv.NumError); !ok || ne.Err != strconv.ErrRange {
				return 0, false
			}
			return MaxRetryAfter, true
		}
		if secs > uint64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter, true
		}
		d = time.Duration(secs) * time.Second
	} else {
		t, err := http.ParseTime(v)
		if err != nil {
			return 0, false
		}
		d = t.Sub(now)
	}
	return clampRetryAfter(d), true
}

func clampRetryAfter(d time.Duration) time.Duration {
	if d < MinRetryAfter {
		return MinRetryAfter
	}
	if d > MaxRetryAfter {
		return MaxRetryAfter
	}
	return d
}
