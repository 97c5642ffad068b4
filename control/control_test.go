package control

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"btfs/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// fakeLibrary is a Handler over a map: what the server does with its
// answers is under test here, not a library (cmd/btfs tests the real one).
type fakeLibrary struct{ names map[string]bool }

func (f *fakeLibrary) Add(ctx context.Context, req Request) (Entry, error) {
	f.names[req.Source] = true
	return Entry{Name: req.Source}, nil
}

func (f *fakeLibrary) Remove(ctx context.Context, name string) (Entry, error) {
	if !f.names[name] {
		return Entry{}, errors.New("no such torrent")
	}
	delete(f.names, name)
	return Entry{Name: name}, nil
}

func (f *fakeLibrary) List(ctx context.Context) ([]Entry, error) {
	var out []Entry
	for n := range f.names {
		out = append(out, Entry{Name: n})
	}
	return out, nil
}

// TestServer: add, ls, rm, errors; the socket is 0600 in a 0700
// directory, a stale socket is replaced, a live one refused, and Close
// removes it.
func TestServer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	path := filepath.Join(dir, "x.sock")
	h := &fakeLibrary{names: map[string]bool{}}
	s, err := Listen(path, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, %v; want %v", p, fi.Mode().Perm(), err, want)
		}
	}
	if _, err := Listen(path, h, nil); err == nil || !strings.Contains(err.Error(), "served by another btfs") {
		t.Errorf("a second server: %v", err)
	}
	ctx := context.Background()
	if es, err := Call(ctx, path, Request{Op: "add", Source: "magnet:?a"}); err != nil || len(es) != 1 || es[0].Name != "magnet:?a" {
		t.Fatalf("add: %v %v", es, err)
	}
	resp, err := Do(ctx, path, Request{Op: "ls"})
	if err != nil || len(resp.Entries) != 1 || resp.Goroutines <= 0 {
		t.Fatalf("ls: %+v %v", resp, err)
	}
	if _, err := Call(ctx, path, Request{Op: "rm", Name: "other"}); err == nil || err.Error() != "no such torrent" {
		t.Errorf("rm of an unknown name: %v", err)
	}
	if _, err := Call(ctx, path, Request{Op: "explode"}); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("an unknown command: %v", err)
	}
	if _, err := Call(ctx, path, Request{Op: "rm", Name: "magnet:?a"}); err != nil || len(h.names) != 0 {
		t.Errorf("rm: %v, left %v", err, h.names)
	}
	s.Close()
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the socket after Close: %v", err)
	}
	// A stale socket file (a killed btfs) is replaced.
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s2, err := Listen(path, h, nil)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	s2.Close()
}

// TestDecodeRequest: the commands' shapes are checked.
func TestDecodeRequest(t *testing.T) {
	tests := []struct {
		in, err string
	}{
		{`{"op":"ls"}`, ""},
		{`{"op":"add","source":"magnet:?x"}`, ""},
		{`{"op":"add","torrent":"ZDQ6aW5mb2Vl"}`, ""},
		{`{"op":"add"}`, "add needs a source or a torrent"},
		{`{"op":"add","source":"s","torrent":"ZQ=="}`, "add needs a source or a torrent"},
		{`{"op":"rm"}`, "rm needs a name"},
		{`{"op":"mkfs"}`, "unknown command"},
		{`not json`, "bad request"},
		{``, "bad request"},
	}
	for _, tc := range tests {
		_, err := DecodeRequest(strings.NewReader(tc.in))
		if (err == nil) != (tc.err == "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("DecodeRequest(%q) = %v, want %q", tc.in, err, tc.err)
		}
	}
}

// FuzzDecodeRequest: any bytes give a request that passed the checks or
// an error, never a panic.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{`{"op":"ls"}`, `{"op":"add","source":"magnet:?x"}`, `{"op":"rm","name":"x"}`, `{"op":"add","torrent":"ZQ=="}`, `[`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := DecodeRequest(bytes.NewReader(data))
		if err != nil {
			return
		}
		switch req.Op {
		case "ls":
		case "add":
			if (req.Source == "") == (len(req.Torrent) == 0) {
				t.Fatalf("accepted an add of neither or both: %+v", req)
			}
		case "rm":
			if req.Name == "" {
				t.Fatal("accepted an rm without a name")
			}
		default:
			t.Fatalf("accepted op %q", req.Op)
		}
	})
}
