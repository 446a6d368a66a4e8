// Package durfmt prints durations as people write them: "14d", "6h",
// "90d 3h", "45m 10s", "350ms" — the two largest units of days, hours,
// minutes and seconds, rounded down, rather than time.Duration's
// "2160h0m0s". The command's output and the watchdog's problems use it.
package durfmt

import (
	"strconv"
	"time"
)

// Day is 24 hours, the largest unit Format prints.
const Day = 24 * time.Hour

var units = []struct {
	d    time.Duration
	name string
}{{Day, "d"}, {time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"}}

// Format returns d with at most its two largest non-zero units, the
// smaller rounded down: 90d 3h, 14d, 6h, 5m 30s, 45s. Under a second it
// is milliseconds (350ms, 0s for zero); a negative duration gets a minus
// sign.
func Format(d time.Duration) string {
	if d < 0 {
		if d == -d { // math.MinInt64
			d++
		}
		return "-" + Format(-d)
	}
	if d < time.Second {
		if ms := d.Milliseconds(); ms > 0 {
			return strconv.FormatInt(ms, 10) + "ms"
		}
		return "0s"
	}
	var out string
	shown := 0
	for _, u := range units {
		n := d / u.d
		if n == 0 {
			if shown > 0 {
				break // the next unit down is not adjacent: stop
			}
			continue
		}
		if shown > 0 {
			out += " "
		}
		out += strconv.FormatInt(int64(n), 10) + u.name
		d -= n * u.d
		shown++
		if shown == 2 {
			break
		}
	}
	return out
}
