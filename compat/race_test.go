//go:build race

package compat_test

// raceEnabled says the tests run with the race detector, and so ferry is
// built with it too.
const raceEnabled = true
