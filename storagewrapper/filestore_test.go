package storagewrapper

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"btfs/metainfo"
)

// fileSpec is one file of a torrent made by filesFixture.
type fileSpec struct {
	// path is '/'-separated below the torrent's root.
	path string
	// size is the file's length.
	size int64
	// pad marks a BEP 47 padding file (its bytes are zeros).
	pad bool
}

// filesFixture makes a torrent named "tor" of the given files (a single
// file when multi is false and there is one spec), with pseudo-random
// content and zeros in padding files.
func filesFixture(t testing.TB, pieceLen int64, multi bool, specs ...fileSpec) *fixture {
	t.Helper()
	var total int64
	info := &metainfo.Info{Name: "tor", PieceLength: pieceLen, MultiFile: multi}
	for _, s := range specs {
		path := strings.Split(s.path, "/")
		if !multi {
			path = []string{info.Name}
		}
		info.Files = append(info.Files, metainfo.File{Path: path, Length: s.size, Offset: total, Padding: s.pad})
		total += s.size
	}
	info.TotalLength = total
	data := make([]byte, total)
	rng := rand.NewChaCha8([32]byte{byte(pieceLen), byte(total), byte(len(specs))})
	for i, s := range specs {
		if !s.pad {
			rng.Read(data[info.Files[i].Offset : info.Files[i].Offset+s.size])
		}
	}
	n := int((total + pieceLen - 1) / pieceLen)
	info.Pieces = make([]metainfo.Hash, n)
	for p := range n {
		info.Pieces[p] = sha1.Sum(data[int64(p)*pieceLen : min(int64(p+1)*pieceLen, total)])
	}
	return &fixture{info: info, data: data}
}

// onDisk is where the FileStore keeps file k of f under dir.
func onDisk(f *fixture, dir string, k int) string {
	if !f.info.MultiFile {
		return filepath.Join(dir, f.info.Name)
	}
	return filepath.Join(append([]string{dir, f.info.Name}, f.info.Files[k].Path...)...)
}

// fileData is file k's content.
func fileData(f *fixture, k int) []byte {
	fl := f.info.Files[k]
	return f.data[fl.Offset : fl.Offset+fl.Length]
}

// writeFiles puts every non-padding file of f under dir, its content
// passed through edit (nil: unchanged; returning nil: the file is left out).
func writeFiles(t testing.TB, f *fixture, dir string, edit func(k int, b []byte) []byte) {
	t.Helper()
	for k, fl := range f.info.Files {
		if fl.Padding {
			continue
		}
		b := slices.Clone(fileData(f, k))
		if edit != nil {
			if b = edit(k, b); b == nil {
				continue
			}
		}
		p := onDisk(f, dir, k)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// layouts are the torrents the FileStore tests run on. Pieces of 1000
// bytes (not a multiple of any file's size) span files everywhere; the
// empty files sit at the start, between files and at the end.
var layouts = []struct {
	name     string
	multi    bool
	pieceLen int64
	files    []fileSpec
}{
	{"single file", false, 2 * BlockSize, []fileSpec{{path: "tor", size: 5*BlockSize + 123}}},
	{"multi-file", true, 1000, []fileSpec{
		{path: "empty-first", size: 0},
		{path: "a.bin", size: 700},
		{path: "sub/b.bin", size: 1500},
		{path: "sub/empty", size: 0},
		{path: "sub/deeper/c.bin", size: 2},
		{path: ".pad/298", size: 298, pad: true},
		{path: "d.bin", size: 2000},
		{path: "z/empty-last", size: 0},
	}},
}

// TestFileStoreLayout downloads each layout into a FileStore and checks
// what is on disk: the files where every client puts them, with their
// bytes; empty files created at once; padding files never.
func TestFileStoreLayout(t *testing.T) {
	for _, lay := range layouts {
		t.Run(lay.name, func(t *testing.T) {
			f := filesFixture(t, lay.pieceLen, lay.multi, lay.files...)
			dir := t.TempDir()
			s, err := NewFileStore(dir, f.info, false)
			if err != nil {
				t.Fatal(err)
			}
			for k, fl := range f.info.Files {
				_, err := os.Stat(onDisk(f, dir, k))
				switch {
				case fl.Padding && !errors.Is(err, os.ErrNotExist):
					t.Errorf("padding file %v exists before any write: %v", fl.Path, err)
				case fl.Length == 0 && !fl.Padding && err != nil:
					t.Errorf("empty file %v not created: %v", fl.Path, err)
				}
			}
			w := newWrapper(t, f, s, Config{})
			// One piece fails its hash first: FileStore keeps the bad
			// bytes in place, and the good download overwrites them.
			if res := fetch(t, w, 1, "liar", func(b Block) []byte { return corrupt(f.block(b)) }); !res.HashFailed {
				t.Fatalf("corrupt piece: %+v", res)
			}
			downloadAll(t, w, f)
			for k, fl := range f.info.Files {
				got, err := os.ReadFile(onDisk(f, dir, k))
				if fl.Padding {
					if !errors.Is(err, os.ErrNotExist) {
						t.Errorf("padding file %v was created: %v", fl.Path, err)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, fileData(f, k)) {
					t.Errorf("file %v: %d bytes on disk differ from its %d", fl.Path, len(got), fl.Length)
				}
			}
			// Through the wrapper: everything, padding as zeros.
			buf := make([]byte, f.info.TotalLength)
			if n, err := w.ReadAt(t.Context(), buf, 0); err != nil || n != len(buf) || !bytes.Equal(buf, f.data) {
				t.Fatalf("ReadAt of the whole torrent: %d, %v, equal %v", n, err, bytes.Equal(buf, f.data))
			}
		})
	}
}

// TestFileStorePadding reads a padding range through the store: zeros,
// whatever was written there.
func TestFileStorePadding(t *testing.T) {
	f := filesFixture(t, 1000, true, layouts[1].files...)
	s, err := NewFileStore(t.TempDir(), f.info, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var pad metainfo.File
	for _, fl := range f.info.Files {
		if fl.Padding {
			pad = fl
		}
	}
	p := int(pad.Offset / f.info.PieceLength)
	inPiece := pad.Offset - f.info.PieceOffset(p)
	ones := bytes.Repeat([]byte{0xff}, int(pad.Length))
	if n, err := s.Piece(p).WriteAt(ones, inPiece); err != nil || n != len(ones) {
		t.Fatalf("write over padding: %d, %v", n, err)
	}
	got := make([]byte, pad.Length)
	if _, err := s.Piece(p).ReadAt(got, inPiece); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, make([]byte, pad.Length)) {
		t.Fatal("padding does not read as zeros")
	}
}

// TestFileStoreReadOnly seeds existing files without touching them:
// writes fail, nothing is created, reads work.
func TestFileStoreReadOnly(t *testing.T) {
	f := filesFixture(t, 1000, true, layouts[1].files...)
	dir := t.TempDir()
	// Everything but the empty files: read-only must not create them.
	writeFiles(t, f, dir, func(k int, b []byte) []byte {
		if len(b) == 0 {
			return nil
		}
		return b
	})
	before := listTree(t, dir)
	s, err := NewFileStore(dir, f.info, true)
	if err != nil {
		t.Fatal(err)
	}
	w := newWrapper(t, f, s, Config{})
	if err := w.Resume(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.VerifiedPieces != f.info.NumPieces() {
		t.Fatalf("verified %d of %d pieces", st.VerifiedPieces, f.info.NumPieces())
	}
	if _, err := s.Piece(0).WriteAt([]byte{1}, 0); err == nil {
		t.Fatal("a read-only store took a write")
	}
	buf := make([]byte, f.info.TotalLength)
	if _, err := w.ReadAt(t.Context(), buf, 0); err != nil || !bytes.Equal(buf, f.data) {
		t.Fatalf("ReadAt: %v", err)
	}
	if after := listTree(t, dir); !slices.Equal(before, after) {
		t.Fatalf("the tree changed:\nbefore %v\nafter  %v", before, after)
	}
}

// listTree lists the paths and sizes under dir.
func listTree(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out = append(out, fmt.Sprintf("%s %v %d", strings.TrimPrefix(p, dir), fi.Mode(), fi.Size()))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFileStoreCompletion: a piece whose files are absent or too short is
// Missing (no need to read it); one whose files hold enough bytes is
// Unknown (only the hash can tell), never Complete.
func TestFileStoreCompletion(t *testing.T) {
	f := filesFixture(t, 1000, true, layouts[1].files...)
	dir := t.TempDir()
	s, err := NewFileStore(dir, f.info, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := func(step string, c func(p int) Completion) {
		t.Helper()
		for p := range f.info.NumPieces() {
			if got, err := s.Piece(p).Completion(); err != nil || got != c(p) {
				t.Errorf("%s: piece %d: %v, %v; want %v", step, p, got, err, c(p))
			}
		}
	}
	want("empty directory", func(int) Completion { return Missing })
	// d.bin (the last data file) cut short in its last 500 bytes: the
	// pieces touching them are Missing, the others Unknown.
	writeFiles(t, f, dir, func(k int, b []byte) []byte {
		if f.info.Files[k].Path[0] == "d.bin" {
			return b[:len(b)-500]
		}
		return b
	})
	cut := f.info.TotalLength - 500
	want("one file short", func(p int) Completion {
		if f.info.PieceOffset(p)+f.info.PieceLen(p) > cut {
			return Missing
		}
		return Unknown
	})
	writeFiles(t, f, dir, nil)
	want("every file full", func(int) Completion { return Unknown })
	// A missing file makes the pieces it touches Missing.
	if err := os.Remove(onDisk(f, dir, 2)); err != nil { // sub/b.bin: bytes 700..2200
		t.Fatal(err)
	}
	want("one file gone", func(p int) Completion {
		if lo, hi := f.info.PieceOffset(p), f.info.PieceOffset(p)+f.info.PieceLen(p); hi > 700 && lo < 2200 {
			return Missing
		}
		return Unknown
	})
}

// TestFileStorePathEscape: a FileStore refuses a torrent whose paths would
// leave its directory, even though metainfo.Parse never makes one.
func TestFileStorePathEscape(t *testing.T) {
	for _, tc := range []struct {
		name  string
		tname string
		path  []string
	}{
		{"dot-dot component", "tor", []string{"..", "..", "escape"}},
		{"dot-dot name", "..", []string{"escape"}},
		{"absolute component", "tor", []string{"/", "..", "..", "etc", "passwd"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info := &metainfo.Info{Name: tc.tname, PieceLength: 16, TotalLength: 10, MultiFile: true,
				Pieces: make([]metainfo.Hash, 1), Files: []metainfo.File{{Path: tc.path, Length: 10}}}
			dir := t.TempDir()
			s, err := NewFileStore(filepath.Join(dir, "inner"), info, false)
			if err == nil {
				s.Close()
				t.Fatal("NewFileStore accepted a path outside its directory")
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Fatalf("created %v", entries)
			}
		})
	}
}

// TestFileStoreResume: a complete directory verifies every piece; a
// half-written one verifies exactly the pieces whose bytes are all right,
// and the rest downloads into it.
func TestFileStoreResume(t *testing.T) {
	f := filesFixture(t, 1000, true, layouts[1].files...)
	for _, tc := range []struct {
		name string
		edit func(k int, b []byte) []byte
		// bad is the byte range of the torrent left wrong or missing.
		badLo, badHi int64
	}{
		{name: "complete"},
		{
			name: "a.bin corrupt in its middle",
			edit: func(k int, b []byte) []byte {
				if f.info.Files[k].Path[0] == "a.bin" {
					b[350] ^= 1
				}
				return b
			},
			badLo: 350, badHi: 351,
		},
		{
			name: "d.bin half written",
			edit: func(k int, b []byte) []byte {
				if f.info.Files[k].Path[0] == "d.bin" {
					clear(b[1000:]) // preallocated, never written
				}
				return b
			},
			badLo: f.info.Files[6].Offset + 1000, badHi: f.info.TotalLength,
		},
		{
			name: "sub/b.bin missing",
			edit: func(k int, b []byte) []byte {
				if strings.Join(f.info.Files[k].Path, "/") == "sub/b.bin" {
					return nil
				}
				return b
			},
			badLo: 700, badHi: 2200,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, f, dir, tc.edit)
			s, err := NewFileStore(dir, f.info, false)
			if err != nil {
				t.Fatal(err)
			}
			w := newWrapper(t, f, s, Config{HashWorkers: 2})
			if err := w.Resume(t.Context()); err != nil {
				t.Fatal(err)
			}
			bf := w.Bitfield()
			for p := range f.info.NumPieces() {
				lo, hi := f.info.PieceOffset(p), f.info.PieceOffset(p)+f.info.PieceLen(p)
				good := hi <= tc.badLo || lo >= tc.badHi
				if bf.Has(p) != good {
					t.Errorf("piece %d [%d,%d): verified %v, want %v", p, lo, hi, bf.Has(p), good)
				}
			}
			for p := range f.info.NumPieces() {
				if !bf.Has(p) {
					if res := fetch(t, w, p, "peer", f.block); !res.Verified {
						t.Fatalf("piece %d: %+v", p, res)
					}
				}
			}
			r := io.NewSectionReader(s.Piece(0), 0, f.info.PieceLen(0))
			if b, err := io.ReadAll(r); err != nil || !bytes.Equal(b, f.piece(0)) {
				t.Fatalf("piece 0 from the store: %v", err)
			}
			for k, fl := range f.info.Files {
				if fl.Padding {
					continue
				}
				if got, err := os.ReadFile(onDisk(f, dir, k)); err != nil || !bytes.Equal(got, fileData(f, k)) {
					t.Errorf("file %v after the download: %v", fl.Path, err)
				}
			}
		})
	}
}
