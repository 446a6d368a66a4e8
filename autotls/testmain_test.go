package autotls_test

import (
	"testing"

	"github.com/tlsmint/tlsmint/internal/testenv"
)

// TestMain lists the tests that skipped for want of PostgreSQL, Chromium
// or certbot (in CI they fail instead: see internal/testenv).
func TestMain(m *testing.M) { testenv.Main(m) }
