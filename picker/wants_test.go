package picker

import (
	"errors"
	"testing"
	"time"
)

// TestWantBoundaries uses 5-byte pieces and a short last piece (23 bytes:
// pieces of 5,5,5,5,3) and tries every byte range, so that every boundary
// case of mapping bytes to pieces comes up.
func TestWantBoundaries(t *testing.T) {
	const pieceLen, total = 5, 23
	for s := int64(-2); s <= total+2; s++ {
		for e := s - 1; e <= total+3; e++ {
			p := newPicker(t, pieceLen, total)
			p.SetMode(FetchReads)
			mustWants(t, p, Want{Start: s, End: e, Priority: Now, Deadline: at(1)})
			first := -1
			for i := range p.NumPieces() {
				ps, pe := int64(i)*pieceLen, min(int64(i+1)*pieceLen, total)
				want := None
				if cs, ce := max(s, 0), min(e, total); cs < ce && cs < pe && ce > ps {
					want = Now
					if first < 0 {
						first = i
					}
				}
				if got := p.Priority(i); got != want {
					t.Fatalf("want [%d, %d): Priority(%d) = %v, want %v", s, e, i, got, want)
				}
			}
			got, ok := p.Next(nil)
			if (first >= 0) != ok || (ok && got != first) {
				t.Fatalf("want [%d, %d): Next = %d, %v; want %d", s, e, got, ok, first)
			}
		}
	}
}

// TestPieceLengths covers the piece sizes at both ends of what torrents
// use, with a short last piece.
func TestPieceLengths(t *testing.T) {
	const kib, mib, gib = 1 << 10, 1 << 20, 1 << 30
	tests := []struct {
		name               string
		pieceLen, totalLen int64
		wantPieces         int
	}{
		{name: "16 KiB pieces, last of 100 bytes", pieceLen: 16 * kib, totalLen: gib + 100, wantPieces: 65537},
		{name: "16 MiB pieces, last of 1 byte", pieceLen: 16 * mib, totalLen: 4*gib + 1, wantPieces: 257},
		{name: "16 MiB pieces, exact", pieceLen: 16 * mib, totalLen: 4 * gib, wantPieces: 256},
		{name: "one short piece", pieceLen: 16 * mib, totalLen: 1, wantPieces: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPicker(t, tt.pieceLen, tt.totalLen)
			if p.NumPieces() != tt.wantPieces {
				t.Fatalf("NumPieces = %d, want %d", p.NumPieces(), tt.wantPieces)
			}
			p.SetMode(FetchReads) // Next then answers from the wants alone
			last := tt.wantPieces - 1
			ranges := [][2]int64{
				{tt.pieceLen - 1, tt.pieceLen + 1}, // straddles 0|1
				{tt.pieceLen, 2 * tt.pieceLen},     // exactly piece 1
				{tt.totalLen - 1, tt.totalLen},     // last byte
				{tt.totalLen - 1, tt.totalLen + 1000},
				{tt.totalLen, tt.totalLen + 10}, // past the end
				{0, tt.totalLen},
			}
			for _, r := range ranges {
				mustWants(t, p, Want{Start: r[0], End: r[1], Priority: Now, Deadline: at(1)})
				first := -1
				for _, i := range []int{0, 1, 2, last - 1, last} {
					if i < 0 || i > last {
						continue
					}
					ps, pe := int64(i)*tt.pieceLen, min(int64(i+1)*tt.pieceLen, tt.totalLen)
					cs, ce := r[0], min(r[1], tt.totalLen)
					want := None
					if cs < ce && cs < pe && ce > ps {
						want = Now
						if first < 0 {
							first = i
						}
					}
					if got := p.Priority(i); got != want {
						t.Errorf("want [%d, %d): Priority(%d) = %v, want %v", r[0], r[1], i, got, want)
					}
				}
				got, ok := p.Next(nil)
				if (first >= 0) != ok || (ok && got != first) {
					t.Errorf("want [%d, %d): Next = %d, %v; want %d", r[0], r[1], got, ok, first)
				}
			}
		})
	}
}

func TestPriorityAndDeadline(t *testing.T) {
	p := newPicker(t, 10, 100)
	mustWants(t, p,
		Want{Start: 0, End: 50, Priority: Readahead, Deadline: at(5)},
		Want{Start: 20, End: 30, Priority: Now, Deadline: at(3)},
		Want{Start: 25, End: 45, Priority: Now, Deadline: at(1)},
		Want{Start: 60, End: 70, Priority: Readahead},
	)
	p.Verified(4)
	tests := []struct {
		piece    int
		want     Priority
		deadline time.Time
	}{
		{0, Readahead, at(5)},
		{2, Now, at(1)},
		{3, Now, at(1)},
		{4, None, time.Time{}}, // verified: nothing to hurry
		{5, None, time.Time{}},
		{6, Readahead, time.Time{}},
		{-1, None, time.Time{}},
		{10, None, time.Time{}},
	}
	for _, tt := range tests {
		if got := p.Priority(tt.piece); got != tt.want {
			t.Errorf("Priority(%d) = %v, want %v", tt.piece, got, tt.want)
		}
		dl, ok := p.Deadline(tt.piece)
		if ok != !tt.deadline.IsZero() || !dl.Equal(tt.deadline) {
			t.Errorf("Deadline(%d) = %v, %v; want %v", tt.piece, dl, ok, tt.deadline)
		}
	}
}

func TestSetWantsRejectsUnknownPriority(t *testing.T) {
	p := newPicker(t, 10, 100)
	mustWants(t, p, Want{Start: 0, End: 10, Priority: Now})
	err := p.SetWants([]Want{{Start: 50, End: 60, Priority: Readahead}, {Start: 0, End: 10, Priority: 7}})
	if !errors.Is(err, ErrBadWant) {
		t.Fatalf("SetWants with priority 7: %v, want ErrBadWant", err)
	}
	if p.Priority(0) != Now || p.Priority(5) != None {
		t.Fatal("a rejected SetWants changed the wants")
	}
}
