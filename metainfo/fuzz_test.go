package metainfo

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/jackpal/bencode-go"
)

// The seed corpora live in testdata/fuzz/<target>/: torrents made by
// Build, hand-made edge cases and hostile inputs. `go test` runs them as
// regression tests; `go test -fuzz` grows from them.

func FuzzParse(f *testing.F) {
	f.Add(torrent(singleInfo()))
	f.Add(torrent(multiInfo(10, file(3, "a", "x.bin"), file(0, "empty"), file(7, "b"))))
	f.Add(torrent(hybridInfo(hybridFiles(), hybridTree())))
	f.Fuzz(func(t *testing.T, data []byte) {
		mi, err := Parse(data)
		if err != nil {
			return
		}
		if mi.InfoHash != sha1.Sum(mi.InfoBytes) {
			t.Fatal("InfoHash is not SHA-1(InfoBytes)")
		}
		start, end, err := DictValueSpan(data, "info")
		if err != nil || !bytes.Equal(data[start:end], mi.InfoBytes) {
			t.Fatalf("InfoBytes are not the raw info span (%v)", err)
		}
		info, err := ParseInfo(mi.InfoBytes)
		if err != nil || !reflect.DeepEqual(info, mi.Info) {
			t.Fatalf("ParseInfo(InfoBytes) = %+v, %v; want %+v", info, err, mi.Info)
		}
		checkInfoInvariants(t, mi.Info)
	})
}

// checkInfoInvariants states what every parsed Info promises its users.
func checkInfoInvariants(t *testing.T, info *Info) {
	t.Helper()
	if info.PieceLength <= 0 || info.TotalLength <= 0 || len(info.Files) == 0 || checkComponent(info.Name) != nil {
		t.Fatalf("bad Info header: %+v", info)
	}
	if n := pieceCount(info.TotalLength, info.PieceLength); n != int64(info.NumPieces()) {
		t.Fatalf("%d pieces for %d bytes in pieces of %d", info.NumPieces(), info.TotalLength, info.PieceLength)
	}
	var off int64
	files := map[string]bool{}
	dirs := map[string]bool{}
	for i, f := range info.Files {
		if f.Offset != off || f.Length < 0 {
			t.Fatalf("file %d: offset %d, length %d; want offset %d", i, f.Offset, f.Length, off)
		}
		off += f.Length
		if len(f.Path) == 0 {
			t.Fatalf("file %d has an empty path", i)
		}
		for _, c := range f.Path {
			if err := checkComponent(c); err != nil {
				t.Fatalf("file %d: %v", i, err)
			}
		}
		p := strings.Join(f.Path, "/")
		if files[p] || dirs[p] {
			t.Fatalf("file %d: path %q is taken", i, p)
		}
		files[p] = true
		for j := 1; j < len(f.Path); j++ {
			d := strings.Join(f.Path[:j], "/")
			if files[d] {
				t.Fatalf("file %d: directory %q is a file", i, d)
			}
			dirs[d] = true
		}
		first, end := info.FileRange(i)
		if first < 0 || end > info.NumPieces() || first > end || (f.Length > 0) != (end > first) {
			t.Fatalf("file %d: FileRange = [%d,%d) of %d pieces", i, first, end, info.NumPieces())
		}
	}
	if off != info.TotalLength {
		t.Fatalf("files add up to %d, TotalLength is %d", off, info.TotalLength)
	}
}

var fuzzLimits = Limits{MaxSize: 1 << 16, MaxDepth: 32}

// FuzzCheckBencode holds the checker, CheckBencodePrefix, Decode,
// DictValueSpan and the walker (Value) to one another on arbitrary input.
func FuzzCheckBencode(f *testing.F) {
	for _, s := range []string{"i1e", "d1:ai1ee", "l1:xe", "d1:bi1e1:ai2ee", "d1:ai1e1:ai1ee", "999999999999:"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		err := CheckBencode(data, fuzzLimits)
		// The walker reads what the checker accepts, and refuses what it
		// refuses but for the rules it leaves to the checker.
		names := 50
		w, werr := walk(t, ValueOf(data), "", &names)
		if err == nil && werr != nil {
			t.Fatalf("CheckBencode accepted, the walker refused: %v", werr)
		}
		if err != nil && werr == nil && !errors.Is(err, ErrLimit) && !strings.Contains(err.Error(), "duplicate dictionary key") {
			t.Fatalf("CheckBencode refused (%v), the walker read %v", err, w)
		}
		n, perr := CheckBencodePrefix(data, fuzzLimits)
		if (err == nil) != (perr == nil && n == len(data)) {
			t.Fatalf("CheckBencode = %v but CheckBencodePrefix = %d, %v for %d bytes", err, n, perr, len(data))
		}
		if perr == nil {
			if err := CheckBencode(data[:n], fuzzLimits); err != nil {
				t.Fatalf("prefix of %d bytes accepted by CheckBencodePrefix, refused by CheckBencode: %v", n, err)
			}
		}
		if err != nil {
			if _, derr := Decode(data, fuzzLimits); derr == nil {
				t.Fatal("Decode accepted what CheckBencode refused")
			}
			return
		}
		v, err := Decode(data, fuzzLimits)
		if err != nil {
			t.Fatalf("CheckBencode accepted, Decode failed: %v", err)
		}
		if !reflect.DeepEqual(w, v) {
			t.Fatalf("the walker read %#v, Decode %#v", w, v)
		}
		// A re-encoding (canonical) is accepted too and decodes the same.
		var again bytes.Buffer
		if err := bencode.Marshal(&again, v); err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		v2, err := Decode(again.Bytes(), Limits{MaxSize: 2 * again.Len(), MaxDepth: fuzzLimits.MaxDepth})
		if err != nil || !reflect.DeepEqual(v, v2) {
			t.Fatalf("re-encoding %q: %v", again.Bytes(), err)
		}
		if m, ok := v.(map[string]any); ok {
			for k := range m {
				start, end, err := DictValueSpan(data, k)
				if err != nil {
					t.Fatalf("DictValueSpan(%q): %v", k, err)
				}
				got, err := Decode(data[start:end], fuzzLimits)
				if err != nil || !reflect.DeepEqual(got, m[k]) {
					t.Fatalf("DictValueSpan(%q) = %q, which decodes to %v, %v; want %v", k, data[start:end], got, err, m[k])
				}
			}
		}
	})
}

func FuzzParseMagnet(f *testing.F) {
	f.Add("magnet:?xt=urn:btih:" + testHex + "&dn=x&tr=udp%3A%2F%2F127.0.0.1%3A6969&x.pe=127.0.0.1:1")
	f.Add("magnet:?xt=urn:btih:" + testBase32)
	f.Fuzz(func(t *testing.T, uri string) {
		m, err := ParseMagnet(uri)
		if err != nil {
			return
		}
		s := m.String()
		back, err := ParseMagnet(s)
		if err != nil {
			t.Fatalf("ParseMagnet(%q) = %v; it came from %q", s, err, uri)
		}
		if !reflect.DeepEqual(back, m) {
			t.Fatalf("round trip: %+v != %+v", back, m)
		}
		if back.String() != s {
			t.Fatalf("String() is not stable: %q != %q", back.String(), s)
		}
	})
}
