package metainfo

import (
	"encoding/hex"
	"fmt"
	"time"
)

// Hash is a SHA-1 digest: an info-hash or a piece hash.
type Hash [20]byte

// String returns the lower-case hex form, the one trackers, caches and logs use.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MetaInfo is a parsed .torrent file. Everything outside Info is advisory
// (trackers, comments); Info is what the info-hash covers.
type MetaInfo struct {
	// Announce is the primary tracker URL (BEP 3); may be empty (trackerless).
	Announce string
	// AnnounceList holds the tiers of BEP 12, in file order; empty when absent.
	AnnounceList [][]string
	// URLList holds BEP 19 web seed URLs.
	URLList []string
	// CreationDate is zero when the torrent does not say.
	CreationDate time.Time
	// Comment and CreatedBy are free text from the file.
	Comment   string
	CreatedBy string
	// Info is the validated info dictionary.
	Info *Info
	// InfoBytes are the raw bytes of the info dictionary exactly as they
	// stand in the file: the info-hash is their SHA-1, and they are what
	// ut_metadata serves to other peers.
	InfoBytes []byte
	// InfoHash is SHA-1(InfoBytes).
	InfoHash Hash
}

// Info is the validated info dictionary. Its file list is always non-empty:
// a single-file torrent has one File whose Path is [Name].
//
// Parse and ParseInfo guarantee: 1 <= PieceLength <= MaxPieceLength;
// TotalLength >= 1, so NumPieces() >= 1 and equals
// ceil(TotalLength/PieceLength); Files are contiguous (each Offset is the
// sum of the lengths before it); every path component is safe; no two files
// share a path and no file sits where another needs a directory (Parse
// documents the renaming rule).
type Info struct {
	// Name is the suggested top-level name, already made safe.
	Name string
	// PieceLength is the nominal piece size; only the last piece may be shorter.
	PieceLength int64
	// Pieces holds one SHA-1 per piece.
	Pieces []Hash
	// Private is BEP 27's flag: no DHT, no PEX.
	Private bool
	// MultiFile is true when the torrent had a "files" list (a directory).
	MultiFile bool
	// Files in torrent order, with safe paths and their offsets in the
	// concatenated torrent data.
	Files []File
	// TotalLength is the sum of all file lengths.
	TotalLength int64
	// Hybrid is set for a BEP 52 hybrid torrent ("meta version" 2 with both
	// a v2 "file tree" and v1 "pieces"): btfs swarms it through its v1
	// info-hash and pieces; Parse has checked that the v2 half describes
	// the same files.
	Hybrid bool
}

// Version names the torrent's BitTorrent version for people: "v1" or
// "hybrid v1+v2" (v2-only torrents do not parse).
func (i *Info) Version() string {
	if i.Hybrid {
		return "hybrid v1+v2"
	}
	return "v1"
}

// File is one file of the torrent.
type File struct {
	// Path components below the torrent's root (for a multi-file torrent,
	// below Name); each component is safe: non-empty, not "." or "..",
	// without '/', '\\' or NUL.
	Path []string
	// Length in bytes; zero-length files are kept.
	Length int64
	// Offset of the file's first byte in the torrent's concatenated data.
	Offset int64
	// Padding marks a BEP 47 padding file (attr contains 'p'): its bytes
	// are zeros that exist only to align the next file to a piece; the
	// mount hides it.
	Padding bool
}

// NumPieces is the number of pieces.
func (i *Info) NumPieces() int { return len(i.Pieces) }

// PieceLen returns the length of piece p; the last piece may be short.
func (i *Info) PieceLen(p int) int64 {
	if p < 0 || p >= len(i.Pieces) {
		panic(fmt.Sprintf("metainfo: piece %d out of range [0,%d)", p, len(i.Pieces)))
	}
	if p == len(i.Pieces)-1 {
		return i.TotalLength - int64(p)*i.PieceLength
	}
	return i.PieceLength
}

// PieceOffset returns the torrent offset of piece p's first byte.
func (i *Info) PieceOffset(p int) int64 { return int64(p) * i.PieceLength }
