package testpebble

import (
	"os"
	"strconv"
	"sync"
)

// Environment variables that Pebble's va and wfe constructors read.
const (
	envVANoSleep     = "PEBBLE_VA_NOSLEEP"
	envVASleepTime   = "PEBBLE_VA_SLEEPTIME"
	envVAAlwaysValid = "PEBBLE_VA_ALWAYS_VALID"
	envNonceReject   = "PEBBLE_WFE_NONCEREJECT"
	envAuthzReuse    = "PEBBLE_AUTHZREUSE"
	envOrdersPerPage = "PEBBLE_WFE_ORDERS_PER_PAGE"
)

// envMu serialises every construction that sets Pebble's environment
// variables, so that CAs built concurrently with different options do not see
// each other's settings.
var envMu sync.Mutex

// pebbleEnv returns the environment Pebble's constructors must see for opts.
// A nil value means "unset".
func pebbleEnv(opts *Options) map[string]*string {
	set := func(v string) *string { return &v }
	env := map[string]*string{
		envVANoSleep:     nil,
		envVASleepTime:   nil,
		envVAAlwaysValid: nil,
		envNonceReject:   set(strconv.Itoa(opts.NonceRejectPercent)),
		envAuthzReuse:    set(strconv.Itoa(opts.AuthzReusePercent)),
		envOrdersPerPage: nil,
	}
	if !opts.VASleep {
		env[envVANoSleep] = set("1")
	} else if opts.VASleepMax > 0 {
		env[envVASleepTime] = set(strconv.Itoa(opts.VASleepMax))
	}
	if opts.AlwaysValid {
		env[envVAAlwaysValid] = set("1")
	}
	if opts.OrdersPerPage > 0 {
		env[envOrdersPerPage] = set(strconv.Itoa(opts.OrdersPerPage))
	}
	return env
}

// withEnv runs fn with the process environment set to env (nil values unset
// the variable) and restores the previous values afterwards. Calls are
// serialised by envMu.
func withEnv(env map[string]*string, fn func() error) error {
	envMu.Lock()
	defer envMu.Unlock()

	type saved struct {
		value string
		ok    bool
	}
	old := make(map[string]saved, len(env))
	for k := range env {
		v, ok := os.LookupEnv(k)
		old[k] = saved{v, ok}
	}
	defer func() {
		for k, s := range old {
			if s.ok {
				_ = os.Setenv(k, s.value)
			} else {
				_ = os.Unsetenv(k)
			}
		}
	}()
	for k, v := range env {
		var err error
		if v == nil {
			err = os.Unsetenv(k)
		} else {
			err = os.Setenv(k, *v)
		}
		if err != nil {
			return err
		}
	}
	return fn()
}
