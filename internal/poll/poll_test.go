package poll

import (
	"errors"
	"testing"
	"time"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		name    string
		trueAt  int // cond holds from this call on; -1 never
		timeout time.Duration
		wantErr bool
	}{
		{"at once", 0, time.Second, false},
		{"after a few", 3, time.Second, false},
		{"never", -1, 50 * time.Millisecond, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			err := Check(tt.timeout, func() bool {
				calls++
				return tt.trueAt >= 0 && calls > tt.trueAt
			})
			if (err != nil) != tt.wantErr {
				t.Fatalf("Check = %v, want error %v (calls %d)", err, tt.wantErr, calls)
			}
		})
	}
}

func TestUntilNilPasses(t *testing.T) {
	n := 0
	UntilNil(t, time.Second, "third call", func() error {
		n++
		if n < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if n != 3 {
		t.Fatalf("calls = %d, want 3", n)
	}
}
