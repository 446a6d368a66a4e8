package durfmt

import (
	"math"
	"testing"
	"time"
)

func TestFormat(t *testing.T) {
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{350 * time.Millisecond, "350ms"},
		{time.Second, "1s"},
		{45 * time.Second, "45s"},
		{5*time.Minute + 30*time.Second, "5m 30s"},
		{6 * time.Hour, "6h"},
		{6*time.Hour + 59*time.Second, "6h"}, // minutes are zero: not "6h 0m"
		{14 * Day, "14d"},
		{14*Day - time.Second, "13d 23h"}, // rounded down
		{90*Day + 3*time.Hour + 59*time.Minute, "90d 3h"},
		{90*Day + 3*time.Minute, "90d"},
		{-2*Day - 5*time.Hour, "-2d 5h"},
		{time.Duration(math.MinInt64), "-106751d 23h"},
	} {
		if got := Format(tt.d); got != tt.want {
			t.Errorf("Format(%v) = %q, want %q", tt.d, got, tt.want)
		}
	}
}
