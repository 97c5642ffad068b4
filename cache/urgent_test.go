package cache

import (
	"bytes"
	"context"
	"fmt"
	"os"
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
	read := make(chan error, 1)
	buf := make([]byte, 2000)
	off := f.info.PieceOffset(3) + 10
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitFor)
		defer cancel()
		_, err := wa.ReadAt(ctx, buf, off)
		read <- err
	}()
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
	// B finishes piece 3 (the block handed out first, then the rest).
	if _, err := wb.PieceCameIn(3, first.Begin, f.piece(3)[first.Begin:first.Begin+int64(first.Length)], "127.0.0.1:1"); err != nil {
		t.Fatal(err)
	}
	download(t, wb, f, 3)
	if err := <-read; err != nil || !bytes.Equal(buf, f.data[off:off+2000]) {
		t.Fatalf("A's read: %v, right bytes %v", err, bytes.Equal(buf, f.data[off:off+2000]))
	}
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
