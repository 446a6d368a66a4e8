//go:build !race

package autotls_test

const raceEnabled = false
