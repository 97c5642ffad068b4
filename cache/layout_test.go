package cache

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// What tests look at in a torrent's directory: the record, the read times
// and the data file of the fixture (one file).

// piecesIn lists the marked pieces of dir's record (the fixture's) and
// their total length.
func piecesIn(t *testing.T, dir string) ([]int, int64) {
	t.Helper()
	f := testFixture()
	rec, _, err := openRecord(filepath.Join(dir, recordName), f.info)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.close()
	slots, err := rec.pieces()
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	var total int64
	for i, s := range slots {
		if s.state == stateMarked {
			out = append(out, i)
			total += f.info.PieceLen(i)
		}
	}
	return out, total
}

// stateOf is piece i's state in c's record.
func stateOf(t *testing.T, c *Store, i int) uint8 {
	t.Helper()
	s, err := c.slot(i)
	if err != nil {
		t.Fatal(err)
	}
	return s.state
}

// setRead sets piece i's read time to at.
func setRead(t *testing.T, c *Store, i int, at time.Time) {
	t.Helper()
	c.flushReads() // pins of the test's own downloads must not overwrite it later
	if err := c.writeReads([]int{i}, at); err != nil {
		t.Fatal(err)
	}
}

// dataFile is the fixture's data file in c's directory.
func dataFile(c *Store) string { return c.fst.Path(0) }

// corrupt overwrites a few bytes of piece i in the data file, as a person
// or a broken program would (the file's mtime moves).
func corrupt(t *testing.T, c *Store, i int) {
	t.Helper()
	fh, err := os.OpenFile(dataFile(c), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteAt([]byte("garbage!"), c.info.PieceOffset(i)+100); err != nil {
		t.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
}
