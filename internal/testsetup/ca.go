package testsetup

import (
	"testing"

	"github.com/tlsmint/tlsmint/internal/testpebble"
)

// CA starts an in-process Pebble with opts for the test and closes it when
// the test ends; a failure to close is reported as an error of the test.
func CA(tb testing.TB, opts testpebble.Options) *testpebble.CA {
	tb.Helper()
	ca, err := testpebble.New(opts)
	if err != nil {
		tb.Fatalf("testpebble.New: %v", err)
	}
	tb.Cleanup(func() {
		if err := ca.Close(); err != nil {
			tb.Errorf("closing the test CA: %v", err)
		}
	})
	return ca
}
