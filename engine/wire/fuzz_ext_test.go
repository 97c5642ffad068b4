package wire

import (
	"errors"
	"testing"
)

// FuzzParseMetadataMsg feeds arbitrary payloads to ParseMetadataMsg under
// the default cap and a small one. It must never panic; every error must
// wrap one of the codec's sentinels; what it accepts must satisfy the
// documented bounds and survive EncodeMetadataMsg and a second parse
// unchanged.
func FuzzParseMetadataMsg(f *testing.F) {
	f.Fuzz(func(t *testing.T, payload []byte) {
		for _, maxTotal := range []int64{0, 40000} {
			m, err := ParseMetadataMsg(payload, maxTotal)
			if err != nil {
				if !errors.Is(err, ErrBadMetadataMsg) && !errors.Is(err, ErrUnknownMetadataMsg) && !errors.Is(err, ErrMetadataTooLarge) {
					t.Fatalf("error wraps no sentinel: %v", err)
				}
				continue
			}
			limit := maxTotal
			if limit == 0 {
				limit = DefaultMaxMetadataSize
			}
			switch m.Type {
			case MetadataRequest, MetadataReject:
				if m.TotalSize != 0 || m.Data != nil || m.Piece < 0 || m.Piece >= MetadataPieces(limit) {
					t.Fatalf("accepted %v with total %d, %d bytes", m, m.TotalSize, len(m.Data))
				}
			case MetadataData:
				if m.TotalSize < 1 || m.TotalSize > limit || len(m.Data) != MetadataPieceLen(m.TotalSize, m.Piece) || len(m.Data) == 0 {
					t.Fatalf("accepted %v", m)
				}
			default:
				t.Fatalf("accepted unknown type %d", m.Type)
			}
			enc, err := EncodeMetadataMsg(m)
			if err != nil {
				t.Fatalf("EncodeMetadataMsg of a parsed %v: %v", m, err)
			}
			back, err := ParseMetadataMsg(enc, maxTotal)
			if err != nil {
				t.Fatalf("parsing our encoding %q: %v", enc, err)
			}
			if !equalMetadata(back, m) {
				t.Fatalf("round trip %v, want %v", back, m)
			}
		}
	})
}

// FuzzParsePex feeds arbitrary payloads to ParsePex. It must never panic;
// every error must wrap ErrBadPex; what it accepts must hold at most
// MaxPexPeers per list and survive EncodePex and a second parse unchanged.
func FuzzParsePex(f *testing.F) {
	f.Fuzz(func(t *testing.T, payload []byte) {
		m, err := ParsePex(payload)
		if err != nil {
			if !errors.Is(err, ErrBadPex) {
				t.Fatalf("error does not wrap ErrBadPex: %v", err)
			}
			return
		}
		var a4, a6, d4, d6 int
		for _, p := range m.Added {
			if !p.Addr.IsValid() {
				t.Fatalf("invalid added address in %+v", m)
			}
			if p.Addr.Addr().Is4() {
				a4++
			} else {
				a6++
			}
		}
		for _, ap := range m.Dropped {
			if !ap.IsValid() {
				t.Fatalf("invalid dropped address in %+v", m)
			}
			if ap.Addr().Is4() {
				d4++
			} else {
				d6++
			}
		}
		if max(a4, a6, d4, d6) > MaxPexPeers {
			t.Fatalf("lists of %d, %d, %d, %d peers accepted", a4, a6, d4, d6)
		}
		enc, err := EncodePex(m)
		if err != nil {
			t.Fatalf("EncodePex of a parsed %+v: %v", m, err)
		}
		back, err := ParsePex(enc)
		if err != nil {
			t.Fatalf("parsing our encoding %q: %v", enc, err)
		}
		if !equalPex(back, m) {
			t.Fatalf("round trip %+v, want %+v", back, m)
		}
	})
}
