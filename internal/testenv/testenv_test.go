package testenv

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// helperEnv makes the test binary run TestHelperRequire as a child whose
// outcome the parent checks.
const helperEnv = "TESTENV_HELPER"

func TestMain(m *testing.M) { Main(m) }

// TestHelperRequire is the child: a dependency that is missing.
func TestHelperRequire(t *testing.T) {
	if os.Getenv(helperEnv) == "" {
		t.Skip("run by TestRequire")
	}
	Require(t, "Widget", false, "install the widget package")
	t.Log("still running after Require")
}

// child runs TestHelperRequire in a child process with CI set to ci.
func child(t *testing.T, ci string, verbose bool) (string, error) {
	t.Helper()
	args := []string{"-test.run", "^TestHelperRequire$"}
	if verbose {
		args = append(args, "-test.v")
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), helperEnv+"=1", "CI="+ci)
	detach(cmd)
	out, err := cmd.CombinedOutput()
	t.Logf("CI=%s: %v\n%s", ci, err, out)
	return string(out), err
}

func TestRequire(t *testing.T) {
	// In CI the missing dependency fails the test, naming it.
	out, err := child(t, "true", false)
	if err == nil {
		t.Errorf("CI=true: the test passed, want it to fail")
	}
	if !strings.Contains(out, "Widget is missing and CI is true") || !strings.Contains(out, "install the widget package") {
		t.Errorf("CI=true: output lacks the reason:\n%s", out)
	}
	if strings.Contains(out, "still running") {
		t.Errorf("CI=true: the test went on after Require")
	}

	// Outside CI it skips, and the summary names the test and the reason
	// (on stdout with -v; without a terminal, too).
	for _, verbose := range []bool{true, false} {
		out, err = child(t, "", verbose)
		if err != nil {
			t.Errorf("CI unset (-v %v): %v, want a pass with a skip", verbose, err)
		}
		if !strings.Contains(out, "SKIP TestHelperRequire: no Widget: install the widget package") {
			t.Errorf("CI unset (-v %v): no summary line:\n%s", verbose, out)
		}
		if strings.Contains(out, "still running") {
			t.Errorf("CI unset: the test went on after Require")
		}
	}

	// A dependency that is there changes nothing.
	Require(t, "nothing", true, "")
}

func TestInCI(t *testing.T) {
	for _, tt := range []struct {
		v    string
		want bool
	}{{"true", true}, {"1", true}, {"TRUE", true}, {"", false}, {"false", false}, {"yes", false}} {
		t.Setenv("CI", tt.v)
		if got := InCI(); got != tt.want {
			t.Errorf("CI=%q: InCI() = %v, want %v", tt.v, got, tt.want)
		}
	}
}
