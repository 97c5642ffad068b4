package webseed

import (
	"testing"
	"time"
)

// FuzzContentRange: a server's Content-Range never panics the parser or
// yields a negative offset.
func FuzzContentRange(f *testing.F) {
	f.Add("bytes 100-199/1000")
	f.Add("bytes */1000")
	f.Fuzz(func(t *testing.T, v string) {
		if n, ok := contentRangeStart(v); ok && n < 0 {
			t.Fatalf("contentRangeStart(%q) = %d", v, n)
		}
	})
}

// FuzzRetryAfter: a server's Retry-After is always read as a wait in
// [0, maxRetryAfter].
func FuzzRetryAfter(f *testing.F) {
	f.Add("120")
	f.Add("Wed, 21 Oct 2015 07:28:00 GMT")
	now := time.Date(2015, 10, 21, 7, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, v string) {
		if d := retryAfter(v, now); d < 0 || d > maxRetryAfter {
			t.Fatalf("retryAfter(%q) = %v", v, d)
		}
	})
}
