package cache

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"btfs/internal/poll"
	"btfs/picker"
	"btfs/storagewrapper"
)

// TestUrgencyCrossesProcesses: a reader of A waits for a piece B claimed
// as background work; B learns of it and wants the piece Now, until it is
// published; A's reader then gets it without downloading it.
func TestUrgencyCrossesProcesses(t *testing.T) {
	f := testFixture()
	dir := t.TempDir()
	opts := Options{PollInterval: time.Hour}
	ca, cb := openStore(t, dir, f, opts), openStore(t, dir, f, opts)
	wa, wb := newHost(t, f, ca), newHost(t, f, cb)
	run(t, ca, wa)
	run(t, cb, wb)

	// B starts piece 3 in the background: no want of B's covers it.
	first, st := wb.NewRequest(3)
	if st != storagewrapper.RequestGranted {
		t.Fatalf("B: NewRequest(3) = %v", st)
	}
	// A's reader waits for piece 3, and A's engine finds it claimed.
	readDone := readInBackground(t, wa, f, 3)
	if st := download(t, wa, f, 3); st != storagewrapper.RequestClaimedElsewhere {
		t.Fatalf("A: NewRequest(3) = %v", st)
	}
	urgentWant := func() bool {
		for _, w := range wb.Wants() {
			if w.Priority == picker.Now && w.Start <= f.info.PieceOffset(3) && w.End >= f.info.PieceOffset(4) {
				return true
			}
		}
		return false
	}
	deadline := time.After(waitFor)
	for !urgentWant() {
		select {
		case <-wb.Kick():
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatalf("B never wanted piece 3 Now; its wants: %+v", wb.Wants())
		}
	}
	// B, alive, acknowledged A's marker (before it wanted the piece):
	// A must not take the claim over however long the download takes,
	// short of the claim time-out.
	ca.mu.Lock()
	markedAt, marked := ca.markers[3]
	ca.mu.Unlock()
	h, err := ca.readClaim(3)
	if !marked || err != nil {
		t.Fatalf("A's marker on piece 3: %v; B's claim: %v", marked, err)
	}
	if ca.staleAt(h, markedAt, markedAt.Add(2*urgentAckTimeout)) {
		t.Fatalf("B acknowledged A's marker (claim mtime %v, marker %v), yet A would take its claim over", h.mtime, markedAt)
	}
	// B finishes piece 3 (the block handed out first, then the rest).
	if _, err := wb.PieceCameIn(3, first.Begin, f.piece(3)[first.Begin:first.Begin+int64(first.Length)], "127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	download(t, wb, f, 3)
	readDone()
	// The urgency is over on both sides: A's marker gone, B's want released.
	poll.UntilNil(t, waitFor, "the urgency to end on both sides", func() error {
		ents, err := os.ReadDir(ca.urgent)
		if err != nil {
			t.Fatal(err)
		}
		if len(ents) > 0 || urgentWant() {
			return fmt.Errorf("urgency left behind: markers %v, B's wants %+v", ents, wb.Wants())
		}
		return nil
	})
}

// TestFrozenOwnerLosesUrgentClaim: B claims piece 3 and then does nothing
// (its Run never runs: it sees no marker, as a process stopped with SIGSTOP
// would not). A's reader waits for piece 3 and marks it urgent; B never
// acknowledges; A takes the claim over after urgentAckTimeout, downloads
// the piece and the read completes. The claim time-out is an hour: only
// the unacknowledged marker can end B's claim within the test's wait.
func TestFrozenOwnerLosesUrgentClaim(t *testing.T) {
	f := testFixture()
	dir := t.TempDir()
	opts := Options{PollInterval: time.Hour, ClaimTimeout: time.Hour}
	ca, cb := openStore(t, dir, f, opts), openStore(t, dir, f, opts)
	wa, wb := newHost(t, f, ca), newHost(t, f, cb)
	run(t, ca, wa)
	if _, st := wb.NewRequest(3); st != storagewrapper.RequestGranted {
		t.Fatalf("B: NewRequest(3) = %v", st)
	}
	readDone := readInBackground(t, wa, f, 3)
	poll.Until(t, waitFor, "A's reader pinning piece 3", func() bool { return ca.Pinned(3) })
	if st := download(t, wa, f, 3); st != storagewrapper.RequestClaimedElsewhere {
		t.Fatalf("A: NewRequest(3) = %v, want claimed elsewhere", st)
	}
	poll.Until(t, waitFor, "A taking over B's unacknowledged claim on piece 3", func() bool {
		return download(t, wa, f, 3) == storagewrapper.RequestGranted
	})
	readDone()
}

// TestStaleAt: when a claim may be taken over, given our urgency marker's
// time and the claim's mtime (its owner's progress or acknowledgement).
func TestStaleAt(t *testing.T) {
	f := testFixture()
	c := openStore(t, t.TempDir(), f, Options{ClaimTimeout: time.Minute, PollInterval: time.Hour})
	marked := time.Now()
	for _, tc := range []struct {
		name     string
		mtime    time.Time
		markedAt time.Time
		now      time.Time
		want     bool
	}{
		{"no marker, recent progress", marked.Add(-time.Second), time.Time{}, marked.Add(10 * time.Second), false},
		{"no marker, claim timed out", marked.Add(-time.Second), time.Time{}, marked.Add(time.Minute), true},
		{"marker not yet due", marked.Add(-time.Second), marked, marked.Add(urgentAckTimeout / 2), false},
		{"marker unacknowledged", marked.Add(-time.Second), marked, marked.Add(urgentAckTimeout + time.Millisecond), true},
		{"marker acknowledged", marked.Add(time.Millisecond), marked, marked.Add(10 * time.Second), false},
		{"acknowledged, then the claim timed out", marked.Add(time.Millisecond), marked, marked.Add(2 * time.Minute), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := c.staleAt(claimFile{mtime: tc.mtime}, tc.markedAt, tc.now); got != tc.want {
				t.Errorf("staleAt = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestStoppedOwnerProcess: another process claims piece 3, with its Run
// going, and is then stopped with SIGSTOP while it holds the claim. A's
// reader waits for piece 3 and marks it urgent; the stopped owner cannot
// acknowledge; A takes the claim over after urgentAckTimeout (the claim
// time-out is an hour) and the read completes.
func TestStoppedOwnerProcess(t *testing.T) {
	f := testFixture()
	dir := t.TempDir()
	owner := startChild(t, "owner", dir, "3")
	if err := owner.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	ca := openStore(t, dir, f, Options{PollInterval: time.Hour, ClaimTimeout: time.Hour})
	wa := newHost(t, f, ca)
	run(t, ca, wa)
	readDone := readInBackground(t, wa, f, 3)
	poll.Until(t, waitFor, "A's reader pinning piece 3", func() bool { return ca.Pinned(3) })
	if st := download(t, wa, f, 3); st != storagewrapper.RequestClaimedElsewhere {
		t.Fatalf("A: NewRequest(3) = %v, want claimed elsewhere (by the stopped process)", st)
	}
	start := time.Now()
	poll.Until(t, waitFor, "A taking over the stopped process's claim on piece 3", func() bool {
		return download(t, wa, f, 3) == storagewrapper.RequestGranted
	})
	t.Logf("claim taken over %v after it was refused", time.Since(start).Round(time.Millisecond))
	readDone()
}

// readInBackground starts A's reader of 2000 bytes from 10 bytes into
// piece p of w, and returns a function that waits for the read and fails
// the test unless it returned the source's bytes.
func readInBackground(t *testing.T, w *storagewrapper.Wrapper, f *fixture, p int) (wait func()) {
	read := make(chan error, 1)
	buf := make([]byte, 2000)
	off := f.info.PieceOffset(p) + 10
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		_, err := w.ReadAt(ctx, buf, off)
		read <- err
	}()
	return func() {
		t.Helper()
		if err := <-read; err != nil || !bytes.Equal(buf, f.data[off:off+2000]) {
			t.Fatalf("A's read: %v, right bytes %v", err, bytes.Equal(buf, f.data[off:off+2000]))
		}
	}
}
