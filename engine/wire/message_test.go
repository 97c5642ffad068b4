package wire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"
)

// unhex decodes a hex string with spaces for readability.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex in test: %v", err)
	}
	return b
}

// encode writes msgs with a Writer and returns the bytes.
func encode(t testing.TB, msgs ...Message) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for _, m := range msgs {
		if err := w.WriteMessage(m); err != nil {
			t.Fatalf("WriteMessage(%v): %v", m, err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	return buf.Bytes()
}

// equalMessage compares messages treating nil and empty slices alike.
func equalMessage(a, b Message) bool {
	return a.KeepAlive == b.KeepAlive && a.ID == b.ID && a.Index == b.Index &&
		a.Begin == b.Begin && a.Length == b.Length && a.ExtendedID == b.ExtendedID &&
		a.Port == b.Port && bytes.Equal(a.Bitfield, b.Bitfield) &&
		bytes.Equal(a.Block, b.Block) && bytes.Equal(a.Payload, b.Payload)
}

// wireCases are every message type with its exact encoding, written from
// BEP 3, 5, 6 and 10 by hand.
var wireCases = []struct {
	name string
	msg  Message
	hex  string
}{
	{"keep-alive", Message{KeepAlive: true}, "00000000"},
	{"choke", Message{ID: Choke}, "00000001 00"},
	{"unchoke", Message{ID: Unchoke}, "00000001 01"},
	{"interested", Message{ID: Interested}, "00000001 02"},
	{"not-interested", Message{ID: NotInterested}, "00000001 03"},
	{"have", Message{ID: Have, Index: 0x01020304}, "00000005 04 01020304"},
	{"bitfield", Message{ID: Bitfield, Bitfield: []byte{0xff, 0x80}}, "00000003 05 ff80"},
	{"request", Message{ID: Request, Index: 1, Begin: 0x4000, Length: 0x4000}, "0000000d 06 00000001 00004000 00004000"},
	{"piece", Message{ID: Piece, Index: 2, Begin: 0x8000, Block: []byte("abc")}, "0000000c 07 00000002 00008000 616263"},
	{"piece-empty-block", Message{ID: Piece, Index: 2, Begin: 0}, "00000009 07 00000002 00000000"},
	{"cancel", Message{ID: Cancel, Index: 3, Begin: 0, Length: 0x4000}, "0000000d 08 00000003 00000000 00004000"},
	{"port", Message{ID: Port, Port: 6881}, "00000003 09 1ae1"},
	{"suggest", Message{ID: Suggest, Index: 7}, "00000005 0d 00000007"},
	{"have-all", Message{ID: HaveAll}, "00000001 0e"},
	{"have-none", Message{ID: HaveNone}, "00000001 0f"},
	{"reject-request", Message{ID: RejectRequest, Index: 4, Begin: 0x4000, Length: 0x1000}, "0000000d 10 00000004 00004000 00001000"},
	{"allowed-fast", Message{ID: AllowedFast, Index: 9}, "00000005 11 00000009"},
	{"extended-handshake", Message{ID: Extended, ExtendedID: 0, Payload: []byte("de")}, "00000004 14 00 6465"},
	{"extended-empty", Message{ID: Extended, ExtendedID: 3}, "00000002 14 03"},
}

func TestRoundTrip(t *testing.T) {
	for _, tc := range wireCases {
		t.Run(tc.name, func(t *testing.T) {
			want := unhex(t, tc.hex)
			got := encode(t, tc.msg)
			if !bytes.Equal(got, want) {
				t.Fatalf("encoded %x, want %x", got, want)
			}
			// Read it back, also one byte at a time (a slow peer).
			for _, src := range []io.Reader{bytes.NewReader(want), iotest.OneByteReader(bytes.NewReader(want))} {
				r := NewReader(src, Limits{NumPieces: 1 << 30})
				m, err := r.ReadMessage()
				if err != nil {
					t.Fatalf("ReadMessage: %v", err)
				}
				if !equalMessage(m, tc.msg) {
					t.Fatalf("read %v, want %v", m, tc.msg)
				}
				if _, err := r.ReadMessage(); err != io.EOF {
					t.Fatalf("after the message: %v, want io.EOF", err)
				}
			}
		})
	}
}

func TestReadStream(t *testing.T) {
	// Every message back to back: the reader stays in step across types.
	var msgs []Message
	for _, tc := range wireCases {
		msgs = append(msgs, tc.msg)
	}
	data := encode(t, msgs...)
	r := NewReader(iotest.HalfReader(bytes.NewReader(data)), Limits{})
	for i, want := range msgs {
		got, err := r.ReadMessage()
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if !equalMessage(got, want) {
			t.Fatalf("message %d: read %v, want %v", i, got, want)
		}
	}
	if _, err := r.ReadMessage(); err != io.EOF {
		t.Fatalf("at the end: %v, want io.EOF", err)
	}
}

func TestTruncated(t *testing.T) {
	for _, tc := range wireCases {
		full := unhex(t, tc.hex)
		for n := 1; n < len(full); n++ {
			t.Run(tc.name, func(t *testing.T) {
				r := NewReader(bytes.NewReader(full[:n]), Limits{})
				_, err := r.ReadMessage()
				if !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Fatalf("%d of %d bytes: err %v, want io.ErrUnexpectedEOF", n, len(full), err)
				}
			})
		}
	}
	t.Run("empty", func(t *testing.T) {
		if _, err := NewReader(bytes.NewReader(nil), Limits{}).ReadMessage(); err != io.EOF {
			t.Fatalf("err %v, want io.EOF", err)
		}
	})
}

func TestLimits(t *testing.T) {
	piece := func(block int) string { // header of a piece message with a block of that size
		return hex.EncodeToString([]byte{byte((block + 9) >> 24), byte((block + 9) >> 16), byte((block + 9) >> 8), byte(block + 9), 7})
	}
	tests := []struct {
		name string
		lim  Limits
		hex  string // the bytes sent; bodies over a cap need not follow
		want error  // nil: must succeed
	}{
		{"piece 16 KiB", Limits{}, piece(BlockSize) + "00000000 00000000" + strings.Repeat("00", BlockSize), nil},
		{"piece 16 KiB + 1", Limits{}, piece(BlockSize + 1), ErrMessageTooLarge},
		{"piece with MaxBlock 32 KiB", Limits{MaxBlock: 32 << 10}, piece(32<<10) + "00000000 00000000" + strings.Repeat("00", 32<<10), nil},
		{"piece 4 GiB", Limits{}, "ffffffff 07", ErrMessageTooLarge},
		{"piece without header", Limits{}, "00000005 07 00000000", ErrBadLength},
		{"bitfield exact", Limits{NumPieces: 9}, "00000003 05 ff80", nil},
		{"bitfield one byte over", Limits{NumPieces: 9}, "00000004 05", ErrMessageTooLarge},
		{"bitfield unknown count at cap", Limits{}, "00080001 05" + strings.Repeat("00", MaxBitfieldUnknown), nil},
		{"bitfield unknown count over cap", Limits{}, "00080002 05", ErrMessageTooLarge},
		{"bitfield 4 GiB", Limits{NumPieces: 1000}, "ffffffff 05", ErrMessageTooLarge},
		{"extended at cap", Limits{MaxExtended: 100}, "00000066 14 01" + strings.Repeat("00", 100), nil},
		{"extended over cap", Limits{MaxExtended: 100}, "00000067 14", ErrMessageTooLarge},
		{"extended 4 GiB", Limits{}, "ffffffff 14", ErrMessageTooLarge},
		{"extended without sub-id", Limits{}, "00000001 14", ErrBadLength},
		{"choke with a body", Limits{}, "00000002 00 00", ErrMessageTooLarge},
		{"have 4 GiB", Limits{}, "ffffffff 04", ErrMessageTooLarge},
		{"have short", Limits{}, "00000004 04 000000", ErrBadLength},
		{"request long", Limits{}, "0000000e 06", ErrMessageTooLarge},
		{"request short", Limits{}, "0000000c 06", ErrBadLength},
		{"port long", Limits{}, "00000004 09", ErrMessageTooLarge},
		{"unknown skipped", Limits{}, "00000004 2a 010203", nil},
		{"unknown at cap", Limits{MaxUnknown: 10}, "0000000b 2a" + strings.Repeat("00", 10), nil},
		{"unknown over cap", Limits{MaxUnknown: 10}, "0000000c 2a", ErrMessageTooLarge},
		{"unknown 4 GiB", Limits{}, "ffffffff 2a", ErrMessageTooLarge},
		{"have last piece", Limits{NumPieces: 10}, "00000005 04 00000009", nil},
		{"have past last piece", Limits{NumPieces: 10}, "00000005 04 0000000a", ErrBadIndex},
		{"have huge index, count unknown", Limits{}, "00000005 04 ffffffff", nil},
		{"request past last piece", Limits{NumPieces: 10}, "0000000d 06 0000000a 00000000 00004000", ErrBadIndex},
		{"piece past last piece", Limits{NumPieces: 10}, "0000000c 07 0000000a 00000000 616263", ErrBadIndex},
		{"allowed-fast past last piece", Limits{NumPieces: 10}, "00000005 11 0000000b", ErrBadIndex},
		{"request 128 KiB", Limits{}, "0000000d 06 00000000 00000000 00020000", nil},
		{"request 128 KiB + 1", Limits{}, "0000000d 06 00000000 00000000 00020001", ErrRequestTooLarge},
		{"request 4 GiB", Limits{}, "0000000d 06 00000000 00000000 ffffffff", ErrRequestTooLarge},
		{"cancel 4 GiB is not flagged", Limits{}, "0000000d 08 00000000 00000000 ffffffff", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(bytes.NewReader(unhex(t, tc.hex)), tc.lim)
			_, err := r.ReadMessage()
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if tc.want == nil || tc.want == ErrRequestTooLarge {
				// Consumed exactly: the stream is in step.
				if _, err := r.ReadMessage(); err != io.EOF {
					t.Fatalf("next read: %v, want io.EOF", err)
				}
			}
		})
	}
}

func TestHugeRequestFlagged(t *testing.T) {
	// A request over the cap comes back whole with ErrRequestTooLarge, and
	// the next message reads normally.
	data := encode(t,
		Message{ID: Request, Index: 5, Begin: 0, Length: 1 << 20},
		Message{ID: Have, Index: 6},
	)
	r := NewReader(bytes.NewReader(data), Limits{NumPieces: 10})
	m, err := r.ReadMessage()
	if !errors.Is(err, ErrRequestTooLarge) {
		t.Fatalf("err %v, want ErrRequestTooLarge", err)
	}
	if want := (Message{ID: Request, Index: 5, Length: 1 << 20}); !equalMessage(m, want) {
		t.Fatalf("message %v, want %v", m, want)
	}
	if m, err := r.ReadMessage(); err != nil || !equalMessage(m, Message{ID: Have, Index: 6}) {
		t.Fatalf("next: %v, %v; want have(6)", m, err)
	}
}

func TestUnknownIDReturned(t *testing.T) {
	data := append(unhex(t, "00000004 16 aabbcc"), encode(t, Message{ID: Have, Index: 1})...)
	r := NewReader(bytes.NewReader(data), Limits{})
	m, err := r.ReadMessage()
	if err != nil || !equalMessage(m, Message{ID: 0x16}) || m.ID.Known() {
		t.Fatalf("got %v, %v; want a bare unknown(22)", m, err)
	}
	if m, err := r.ReadMessage(); err != nil || !equalMessage(m, Message{ID: Have, Index: 1}) {
		t.Fatalf("next: %v, %v; want have(1)", m, err)
	}
}

// repeatReader yields its data over and over: a stream of identical
// messages (or identical hostile headers) for allocation measurements.
type repeatReader struct {
	data []byte
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k := copy(p[n:], r.data[r.off:])
		n += k
		r.off = (r.off + k) % len(r.data)
	}
	return n, nil
}

// bytesAllocated returns the heap bytes allocated per call of f, averaged
// over runs.
func bytesAllocated(runs int, f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(runs)
}

func TestHostileLengthAllocatesNothingBig(t *testing.T) {
	// The header alone repeats: after each error the reader sits on the
	// next header, so every run is a fresh hostile message on a warm
	// Reader, and any buffer sized from the claim would show.
	for _, hdr := range []string{"ffffffff 07", "ffffffff 05", "ffffffff 14", "ffffffff 04", "ffffffff 2a", "fffffff0 05"} {
		t.Run(hdr, func(t *testing.T) {
			r := NewReader(&repeatReader{data: unhex(t, hdr)}, Limits{NumPieces: 1000})
			per := bytesAllocated(100, func() {
				if _, err := r.ReadMessage(); !errors.Is(err, ErrMessageTooLarge) {
					t.Fatalf("err %v, want ErrMessageTooLarge", err)
				}
			})
			if per > 1<<10 {
				t.Fatalf("%d bytes allocated per hostile message; the claim was 4 GiB", per)
			}
			allocs := testing.AllocsPerRun(100, func() { r.ReadMessage() })
			if allocs > 8 {
				t.Fatalf("%v allocations per hostile message", allocs)
			}
		})
	}
}

func TestLargeBodyGrowsWithData(t *testing.T) {
	// A bitfield claiming the unknown-count cap (512 KiB) but sending only
	// 10 bytes before the connection ends must not cost 512 KiB.
	data := append(unhex(t, "00080001 05"), make([]byte, 10)...)
	var err error
	per := bytesAllocated(20, func() {
		_, err = NewReader(bytes.NewReader(data), Limits{}).ReadMessage()
	})
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err %v, want io.ErrUnexpectedEOF", err)
	}
	if per > 128<<10 {
		t.Fatalf("%d bytes allocated for 10 bytes received", per)
	}
	// And a large body that does arrive in full reads correctly.
	bf := make([]byte, 300_000)
	for i := range bf {
		bf[i] = byte(i * 7)
	}
	m, err := NewReader(bytes.NewReader(encode(t, Message{ID: Bitfield, Bitfield: bf})), Limits{}).ReadMessage()
	if err != nil || !bytes.Equal(m.Bitfield, bf) {
		t.Fatalf("large bitfield: err %v, equal %v", err, bytes.Equal(m.Bitfield, bf))
	}
}

func TestReadPieceDoesNotAllocate(t *testing.T) {
	block := make([]byte, BlockSize)
	r := NewReader(&repeatReader{data: encode(t, Message{ID: Piece, Index: 1, Block: block})}, Limits{})
	r.ReadMessage() // sizes the reusable buffer
	allocs := testing.AllocsPerRun(100, func() {
		m, err := r.ReadMessage()
		if err != nil || len(m.Block) != BlockSize {
			t.Fatalf("ReadMessage: %v, %d bytes", err, len(m.Block))
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per piece message, want 0", allocs)
	}
}

func TestGarbage(t *testing.T) {
	tests := []struct {
		name string
		data string
	}{
		{"http request", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"tls hello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"},
		{"handshake where a message should be", "\x13BitTorrent protocol\x00\x00\x00\x00\x00\x10\x00\x05"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewReader(strings.NewReader(tc.data), Limits{NumPieces: 100})
			for i := 0; ; i++ {
				if _, err := r.ReadMessage(); err != nil {
					break
				}
				if i > len(tc.data) {
					t.Fatal("reader made no progress")
				}
			}
		})
	}
	t.Run("random", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		for range 2000 {
			data := make([]byte, rng.IntN(64))
			for i := range data {
				data[i] = byte(rng.UintN(256))
			}
			// Keep lengths small sometimes so bodies get parsed, not only rejected.
			if len(data) >= 4 && rng.IntN(2) == 0 {
				data[0], data[1], data[2] = 0, 0, 0
			}
			r := NewReader(bytes.NewReader(data), Limits{NumPieces: 50})
			for n := 0; n <= len(data); n++ {
				if _, err := r.ReadMessage(); err != nil && !errors.Is(err, ErrRequestTooLarge) {
					break
				}
			}
		}
	})
}

// recordWriter records each Write's slice, to see what was copied.
type recordWriter struct {
	writes [][]byte
}

func (w *recordWriter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, p)
	return len(p), nil
}

func TestWriterBatches(t *testing.T) {
	rw := &recordWriter{}
	w := NewWriter(rw)
	for i := range 200 {
		if err := w.WriteMessage(Message{ID: Request, Index: uint32(i), Length: BlockSize}); err != nil {
			t.Fatal(err)
		}
	}
	if len(rw.writes) != 0 {
		t.Fatalf("%d writes before Flush, want 0", len(rw.writes))
	}
	if w.Buffered() != 200*17 {
		t.Fatalf("Buffered() = %d, want %d", w.Buffered(), 200*17)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if len(rw.writes) != 1 || len(rw.writes[0]) != 200*17 {
		t.Fatalf("Flush made %d writes, want one of %d bytes", len(rw.writes), 200*17)
	}
	// Overflowing the batch buffer flushes on its own, in whole messages.
	rw.writes = nil
	for range 2000 {
		if err := w.WriteMessage(Message{ID: Have, Index: 1}); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	total := 0
	for _, b := range rw.writes {
		if len(b)%9 != 0 {
			t.Fatalf("a write of %d bytes splits a have message", len(b))
		}
		total += len(b)
	}
	if total != 2000*9 {
		t.Fatalf("wrote %d bytes, want %d", total, 2000*9)
	}
}

func TestWriterPieceNotCopied(t *testing.T) {
	rw := &recordWriter{}
	w := NewWriter(rw)
	block := make([]byte, BlockSize)
	w.WriteMessage(Message{ID: Have, Index: 3}) // batched, goes out with the piece
	if err := w.WriteMessage(Message{ID: Piece, Index: 1, Begin: 0x4000, Block: block}); err != nil {
		t.Fatal(err)
	}
	found := false
	var all []byte
	for _, b := range rw.writes {
		if len(b) > 0 && &b[0] == &block[0] {
			found = true
		}
		all = append(all, b...)
	}
	if !found {
		t.Fatal("the block was copied instead of written from the caller's slice")
	}
	if want := encode(t, Message{ID: Have, Index: 3}, Message{ID: Piece, Index: 1, Begin: 0x4000, Block: block}); !bytes.Equal(all, want) {
		t.Fatal("bytes written differ from the encoding")
	}
	if w.Buffered() != 0 {
		t.Fatalf("Buffered() = %d after a piece, want 0", w.Buffered())
	}
}

type failWriter struct{ err error }

func (w failWriter) Write(p []byte) (int, error) { return 0, w.err }

func TestWriterErrors(t *testing.T) {
	t.Run("unknown id", func(t *testing.T) {
		w := NewWriter(io.Discard)
		if err := w.WriteMessage(Message{ID: 42}); !errors.Is(err, ErrUnknownID) {
			t.Fatalf("err %v, want ErrUnknownID", err)
		}
	})
	t.Run("sticky", func(t *testing.T) {
		boom := errors.New("boom")
		w := NewWriter(failWriter{boom})
		w.WriteMessage(Message{ID: Interested})
		if err := w.Flush(); !errors.Is(err, boom) {
			t.Fatalf("Flush: %v, want boom", err)
		}
		if err := w.WriteMessage(Message{ID: Piece, Block: make([]byte, 100)}); !errors.Is(err, boom) {
			t.Fatalf("after the error: %v, want boom", err)
		}
	})
	t.Run("large payload fails", func(t *testing.T) {
		boom := errors.New("boom")
		w := NewWriter(failWriter{boom})
		if err := w.WriteMessage(Message{ID: Piece, Block: make([]byte, BlockSize)}); !errors.Is(err, boom) {
			t.Fatalf("err %v, want boom", err)
		}
	})
}

func TestMessageString(t *testing.T) {
	tests := []struct {
		m    Message
		want string
	}{
		{Message{KeepAlive: true}, "keep-alive"},
		{Message{ID: Choke}, "choke"},
		{Message{ID: Have, Index: 3}, "have(3)"},
		{Message{ID: Request, Index: 1, Begin: 2, Length: 3}, "request(1, 2, 3)"},
		{Message{ID: Piece, Index: 1, Begin: 2, Block: make([]byte, 5)}, "piece(1, 2, 5 bytes)"},
		{Message{ID: Extended, ExtendedID: 2, Payload: []byte("de")}, "extended(2, 2 bytes)"},
		{Message{ID: 99}, "unknown(99)"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.m.String(); got != tc.want {
				t.Fatalf("String() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestIDClasses(t *testing.T) {
	for id := range 256 {
		fast := id >= 13 && id <= 17
		known := id <= 9 || fast || id == 20
		if got := ID(id).IsFast(); got != fast {
			t.Errorf("ID(%d).IsFast() = %v, want %v", id, got, fast)
		}
		if got := ID(id).Known(); got != known {
			t.Errorf("ID(%d).Known() = %v, want %v", id, got, known)
		}
	}
}
