package audit

import (
	"testing"

	"github.com/tlsmint/tlsmint/internal/testenv"
)

// TestMain runs the helper process of the full-disk test when asked to,
// else the tests, and lists those that skipped for want of PostgreSQL,
// Chromium or certbot (in CI they fail instead: see internal/testenv).
func TestMain(m *testing.M) {
	fsizeHelper()
	testenv.Main(m)
}
