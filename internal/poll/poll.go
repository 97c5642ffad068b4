// Package poll is the one way btfs's tests wait for something: a condition
// that can be observed, checked again and again until a deadline, with a
// message that says what never happened. A test that sleeps and hopes is
// flaky on a loaded machine; a test that polls without a deadline hangs CI.
package poll

import (
	"fmt"
	"testing"
	"time"
)

// Interval is how often a condition is checked.
const Interval = 10 * time.Millisecond

// Until checks cond until it returns true, failing tb with "waited D for
// WHAT" once timeout has passed. It returns as soon as cond holds.
func Until(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	if err := Check(timeout, cond); err != nil {
		tb.Fatalf("waited %v for %s", timeout, what)
	}
}

// UntilNil calls f until it returns nil, failing tb with the last error
// once timeout has passed; for conditions that can say why they do not hold.
func UntilNil(tb testing.TB, timeout time.Duration, what string, f func() error) {
	tb.Helper()
	var last error
	if err := Check(timeout, func() bool { last = f(); return last == nil }); err != nil {
		tb.Fatalf("waited %v for %s: %v", timeout, what, last)
	}
}

// Check checks cond until it returns true (nil) or timeout passes (an
// error); for helpers that run outside a test goroutine or want to report
// the failure themselves.
func Check(timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("condition not met within %v", timeout)
		}
		time.Sleep(Interval)
	}
	return nil
}
