package wire

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"
)

// FuzzReadMessage feeds arbitrary bytes to a Reader, with the piece count
// unknown and known. It must never panic; every message it accepts must
// re-encode to something that reads back the same; and input that decodes
// cleanly to the end, with no unknown IDs, must be exactly the encoding of
// what was read (the wire format has one encoding per message).
func FuzzReadMessage(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, lim := range []Limits{{}, {NumPieces: 100, MaxExtended: 4096, MaxUnknown: 64}} {
			r := NewReader(bytes.NewReader(data), lim)
			var msgs []Message
			clean, known := false, true
			for range len(data) + 1 {
				m, err := r.ReadMessage()
				if err == io.EOF {
					clean = true
					break
				}
				if err != nil && !errors.Is(err, ErrRequestTooLarge) {
					break
				}
				if !m.KeepAlive && !m.ID.Known() {
					known = false
					continue
				}
				// Copy: the slices are only valid until the next read.
				m.Bitfield, m.Block, m.Payload = slices.Clone(m.Bitfield), slices.Clone(m.Block), slices.Clone(m.Payload)
				msgs = append(msgs, m)
			}
			if len(msgs) == 0 {
				continue
			}
			enc := encode(t, msgs...)
			back := NewReader(bytes.NewReader(enc), lim)
			for i, want := range msgs {
				got, err := back.ReadMessage()
				if err != nil && !errors.Is(err, ErrRequestTooLarge) {
					t.Fatalf("re-reading message %d (%v): %v", i, want, err)
				}
				if !equalMessage(got, want) {
					t.Fatalf("message %d: re-read %v, want %v", i, got, want)
				}
			}
			if clean && known && !bytes.Equal(enc, data) {
				t.Fatalf("input %x decoded cleanly but re-encodes as %x", data, enc)
			}
		}
	})
}

// FuzzExtHandshake feeds arbitrary payloads to ParseExtHandshake. It must
// never panic; what it accepts must satisfy the documented bounds and
// survive Encode and a second parse unchanged.
func FuzzExtHandshake(f *testing.F) {
	const maxMeta = 1 << 20
	f.Fuzz(func(t *testing.T, payload []byte) {
		h, err := ParseExtHandshake(payload, maxMeta)
		if err != nil && !errors.Is(err, ErrMetadataTooLarge) {
			return
		}
		for name, id := range h.M {
			if id < 0 || id > 255 {
				t.Fatalf("m[%q] = %d accepted", name, id)
			}
		}
		if h.MetadataSize < 0 || h.MetadataSize > maxMeta || h.Port < 0 || h.Port > 65535 || h.Reqq < 0 {
			t.Fatalf("out-of-range value accepted: %+v", h)
		}
		enc, err := h.Encode()
		if err != nil {
			t.Fatalf("Encode of a parsed handshake %+v: %v", h, err)
		}
		back, err := ParseExtHandshake(enc, maxMeta)
		if err != nil {
			t.Fatalf("parsing our encoding %q: %v", enc, err)
		}
		if !equalExt(back, h) {
			t.Fatalf("round trip %+v, want %+v", back, h)
		}
	})
}
