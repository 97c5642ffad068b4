package fs

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackpal/bencode-go"

	"btfs/metainfo"
	"btfs/picker"
	"btfs/storagewrapper"
)

// fileSpec describes one file of a fixture torrent.
type fileSpec struct {
	// path is slash-separated, below the torrent's directory.
	path string
	// size is the length in bytes.
	size int
	// padding makes it a BEP 47 padding file: zeros, attr "p".
	padding bool
}

// fixture is a real torrent (made by metainfo.Build, parsed by
// metainfo.Parse) whose bytes the test knows.
type fixture struct {
	// mi is the parsed torrent.
	mi *metainfo.MetaInfo
	// data is the whole torrent, files concatenated.
	data []byte
	// content maps a file's path (slash-separated, as seen in the mount) to
	// its bytes; padding files are left out.
	content map[string][]byte
}

// creationDate is the fixtures' creation date: every node's mtime.
var creationDate = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// multiSpecs is the default multi-file layout, with 5-byte pieces: files
// spanning piece boundaries, empty files, a nested directory, a padding
// file, a media file.
var multiSpecs = []fileSpec{
	{path: ".pad/0", size: 3, padding: true},
	{path: "a.txt", size: 7},
	{path: "dir/b.bin", size: 13},
	{path: "dir/empty2", size: 0},
	{path: "dir/sub/c.dat", size: 1},
	{path: "empty", size: 0},
	{path: "x.mp4", size: 23},
	{path: "z.bin", size: 5},
}

// newFixture builds a fixture torrent named name in a test directory: a
// directory of specs, or, when single, the one file of specs[0] (its path
// is then the torrent's name).
func newFixture(t testing.TB, name string, pieceLen int64, single bool, specs []fileSpec) *fixture {
	t.Helper()
	fx, err := buildFixture(t.TempDir(), name, pieceLen, single, specs)
	if err != nil {
		t.Fatalf("fixture: %v", err)
	}
	return fx
}

// buildFixture writes the files under dir and makes the torrent.
func buildFixture(dir, name string, pieceLen int64, single bool, specs []fileSpec) (*fixture, error) {
	root := filepath.Join(dir, name)
	content := map[string][]byte{}
	for _, s := range specs {
		data := make([]byte, s.size)
		if !s.padding {
			seed := sha256.Sum256([]byte(s.path))
			_, _ = rand.NewChaCha8(seed).Read(data)
		}
		p := root
		if !single {
			p = filepath.Join(root, filepath.FromSlash(s.path))
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return nil, err
		}
		if !s.padding {
			content[s.path] = data
		}
	}
	raw, err := metainfo.Build(context.Background(), root, metainfo.BuildOptions{
		PieceLength:  pieceLen,
		CreationDate: creationDate,
		Name:         name,
	})
	if err != nil {
		return nil, err
	}
	if raw, err = markPadding(raw, specs); err != nil {
		return nil, err
	}
	mi, err := metainfo.Parse(raw)
	if err != nil {
		return nil, err
	}
	fx := &fixture{mi: mi, data: make([]byte, 0, mi.Info.TotalLength), content: content}
	for _, f := range mi.Info.Files {
		p := filepath.Join(root, filepath.Join(f.Path...))
		if single {
			p = root
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		if int64(len(fx.data)) != f.Offset {
			return nil, fmt.Errorf("file %v at offset %d, want %d", f.Path, f.Offset, len(fx.data))
		}
		fx.data = append(fx.data, data...)
	}
	return fx, nil
}

// markPadding adds BEP 47's attr "p" to the padding files of a torrent
// (metainfo.Build makes none), re-encoding it canonically.
func markPadding(raw []byte, specs []fileSpec) ([]byte, error) {
	pad := map[string]bool{}
	for _, s := range specs {
		if s.padding {
			pad[s.path] = true
		}
	}
	if len(pad) == 0 {
		return raw, nil
	}
	v, err := bencode.Decode(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	info := v.(map[string]any)["info"].(map[string]any)
	for _, f := range info["files"].([]any) {
		fd := f.(map[string]any)
		var comps []string
		for _, c := range fd["path"].([]any) {
			comps = append(comps, c.(string))
		}
		if pad[strings.Join(comps, "/")] {
			fd["attr"] = "p"
		}
	}
	var out bytes.Buffer
	if err := bencode.Marshal(&out, v); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// fileOffset returns the torrent offset of the file at path (as in content).
func (fx *fixture) fileOffset(t testing.TB, path string) int64 {
	t.Helper()
	for _, f := range fx.mi.Info.Files {
		if strings.Join(f.Path, "/") == path || (!fx.mi.Info.MultiFile && path == fx.mi.Info.Name) {
			return f.Offset
		}
	}
	t.Fatalf("no file %s in the fixture", path)
	return 0
}

// downloader stands for the engine: it watches the wrapper's wants (Kick,
// Wants) and delivers every wanted piece from the fixture's bytes through
// the real block path (NewRequest, PieceCameIn), except the pieces it is
// told to withhold, which never come. Reads through the mount therefore
// really wait for a "download". It is the only consumer of Kick; tests
// wait for changes of the wants through waitWants.
type downloader struct {
	// w is the wrapper it feeds; fx has the bytes.
	w  *storagewrapper.Wrapper
	fx *fixture
	// stop ends run; done is closed when run returned.
	stop, done chan struct{}

	// mu guards the fields below.
	mu sync.Mutex
	// withheld are the pieces never delivered.
	withheld map[int]bool
	// changed is closed (and replaced) after each pass over the wants.
	changed chan struct{}
	// err is the first delivery failure.
	err error
}

func newDownloader(w *storagewrapper.Wrapper, fx *fixture) *downloader {
	d := &downloader{
		w: w, fx: fx,
		stop: make(chan struct{}), done: make(chan struct{}),
		withheld: map[int]bool{}, changed: make(chan struct{}),
	}
	go d.run()
	return d
}

// withhold makes the pieces under the torrent bytes [start, end) never come.
func (d *downloader) withhold(start, end int64) {
	first, last := d.fx.mi.Info.PiecesFor(start, end-start)
	d.mu.Lock()
	defer d.mu.Unlock()
	for p := first; p < last; p++ {
		d.withheld[p] = true
	}
}

func (d *downloader) run() {
	defer close(d.done)
	for {
		select {
		case <-d.stop:
			return
		case <-d.w.Kick():
		}
		for _, want := range d.w.Wants() {
			first, last := d.fx.mi.Info.PiecesFor(want.Start, want.End-want.Start)
			for p := first; p < last; p++ {
				d.deliver(p)
			}
		}
		d.mu.Lock()
		close(d.changed)
		d.changed = make(chan struct{})
		d.mu.Unlock()
	}
}

// deliver downloads piece p, unless it is withheld or verified.
func (d *downloader) deliver(p int) {
	d.mu.Lock()
	skip := d.withheld[p]
	d.mu.Unlock()
	if skip {
		return
	}
	info := d.fx.mi.Info
	for {
		b, st := d.w.NewRequest(p)
		if !st.OK() {
			return
		}
		off := info.PieceOffset(p) + b.Begin
		if _, err := d.w.PieceCameIn(p, b.Begin, d.fx.data[off:off+int64(b.Length)], "test"); err != nil {
			d.mu.Lock()
			d.err = cmpOr(d.err, err)
			d.mu.Unlock()
			return
		}
	}
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// close stops the downloader and reports a delivery failure.
func (d *downloader) close() error {
	close(d.stop)
	<-d.done
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}

// waitWants waits until cond holds for the registered wants and returns
// them. Every change of the wants kicks the downloader, which broadcasts
// after looking at them, so this never polls. The guard only turns a bug
// into a failure instead of a hung test.
func (d *downloader) waitWants(t testing.TB, what string, cond func([]picker.Want) bool) []picker.Want {
	t.Helper()
	guard := time.NewTimer(10 * time.Second)
	defer guard.Stop()
	for {
		d.mu.Lock()
		ch := d.changed
		d.mu.Unlock()
		ws := d.w.Wants()
		if cond(ws) {
			return ws
		}
		select {
		case <-ch:
		case <-guard.C:
			t.Fatalf("gave up waiting for %s; wants: %v", what, ws)
		}
	}
}

// fill delivers every block of the fixture to w: all of it verified.
func (fx *fixture) fill(w *storagewrapper.Wrapper) error {
	for p := range fx.mi.Info.NumPieces() {
		for {
			b, st := w.NewRequest(p)
			if !st.OK() {
				break
			}
			off := fx.mi.Info.PieceOffset(p) + b.Begin
			if _, err := w.PieceCameIn(p, b.Begin, fx.data[off:off+int64(b.Length)], "seed"); err != nil {
				return err
			}
		}
	}
	return nil
}

// env is a fixture mounted over a real wrapper fed by a downloader.
type env struct {
	// fx is the torrent; w its wrapper; dl feeds w.
	fx *fixture
	w  *storagewrapper.Wrapper
	dl *downloader
	// m is the mount; dir its mount point.
	m   *Mounted
	dir string
}

// testLogger logs to the test's output (shown on failure or with -v).
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// newEnv mounts fx in a fresh t.TempDir() and tears everything down at the
// end of the test: unmount (Unmount falls back to a lazy unmount; the mount
// point is never removed while mounted), then check that no want outlived
// the mount, then stop the downloader and close the wrapper.
func newEnv(t testing.TB, fx *fixture, opts Options) *env {
	t.Helper()
	return newEnvAt(t, t.TempDir(), fx, opts, true)
}

// newEnvAt is newEnv at the mount point dir, with or without the "ro"
// mount option.
func newEnvAt(t testing.TB, dir string, fx *fixture, opts Options, readOnly bool) *env {
	t.Helper()
	return newEnvWith(t, dir, fx, opts, func(w *storagewrapper.Wrapper, opts Options) (*Mounted, error) {
		return mount(dir, fx.mi.InfoHash, fx.mi, w, opts, readOnly)
	})
}

// newEnvWith is newEnvAt with the mounting done by mountFn, given the
// wrapper and opts with a test logger.
func newEnvWith(t testing.TB, dir string, fx *fixture, opts Options, mountFn func(*storagewrapper.Wrapper, Options) (*Mounted, error)) *env {
	t.Helper()
	w, err := storagewrapper.New(fx.mi.Info, storagewrapper.NewMemStore(fx.mi.Info), storagewrapper.Config{})
	if err != nil {
		t.Fatalf("storagewrapper.New: %v", err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("wrapper Close: %v", err)
		}
	})
	dl := newDownloader(w, fx)
	t.Cleanup(func() {
		if err := dl.close(); err != nil {
			t.Errorf("downloader: %v", err)
		}
	})
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	m, err := mountFn(w, opts)
	if err != nil {
		t.Fatalf("mount: %v", err)
	}
	t.Cleanup(func() {
		if err := m.Unmount(); err != nil {
			t.Errorf("Unmount: %v", err)
			forceUnmount(t, dir)
		}
		m.Wait()
		if ws := w.Wants(); len(ws) != 0 {
			t.Errorf("wants left after the mount went away: %v", ws)
		}
	})
	return &env{fx: fx, w: w, dl: dl, m: m, dir: dir}
}

// forceUnmount is the last resort of a test's cleanup: fusermount3 -u, then
// umount -l, so that t.TempDir's removal never meets a live mount.
func forceUnmount(t testing.TB, dir string) {
	if out, err := exec.Command("fusermount3", "-u", dir).CombinedOutput(); err == nil {
		return
	} else {
		t.Logf("fusermount3 -u %s: %v: %s", dir, err, out)
	}
	if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
		t.Errorf("umount -l %s: %v: %s", dir, err, out)
	}
}

// path returns the mount path of a file of the fixture.
func (e *env) path(p string) string { return filepath.Join(e.dir, filepath.FromSlash(p)) }

// readaheadWants returns the Readahead wants among ws.
func readaheadWants(ws []picker.Want) []picker.Want {
	return slices.DeleteFunc(slices.Clone(ws), func(w picker.Want) bool { return w.Priority != picker.Readahead })
}

// nowWants returns the Now wants among ws.
func nowWants(ws []picker.Want) []picker.Want {
	return slices.DeleteFunc(slices.Clone(ws), func(w picker.Want) bool { return w.Priority != picker.Now })
}
