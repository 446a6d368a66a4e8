//go:build race

package autotls_test

// raceEnabled reports a build with the race detector, under which large
// tests shrink.
const raceEnabled = true
