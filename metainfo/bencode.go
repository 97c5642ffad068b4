package metainfo

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
)

// Limits bounds what CheckBencode accepts. Every bencoded input that comes
// from outside (a .torrent file, a tracker reply, a peer's extension
// message) passes CheckBencode with limits chosen for its kind before a
// decoder sees it: github.com/jackpal/bencode-go allocates a string's
// declared length before reading it and recurses once per nesting level, so
// 13 hostile bytes ("999999999999:") or a million 'l's would otherwise take
// the process down.
//
// The zero Limits accepts nothing: each caller states its own bounds.
//
// Decoding a checked input into generic values (Decode) can still take
// many times MaxSize in memory, because every value becomes a Go value with
// its own header: a list of empty dictionaries, the worst shape, allocates
// about 66 bytes per input byte (BenchmarkDecodeAmplification). Choose
// MaxSize for Decode's callers with that in mind. Parse does not decode
// generically (it reads in place with Value): it allocates about 4.5
// bytes per input byte (BenchmarkParse).
type Limits struct {
	// MaxSize is the largest input accepted, in bytes. CheckBencodePrefix
	// applies it to the leading value only.
	MaxSize int
	// MaxDepth is the deepest nesting of lists and dictionaries accepted:
	// a bare integer or string has depth 0, "le" has depth 1, a torrent
	// (root dict, info dict, files list, file dict, path list) has depth 5.
	MaxDepth int
}

// TorrentLimits are the limits for .torrent files and for info
// dictionaries fetched from peers.
//
// MaxSize is 64 MiB: the piece list of a 1 TiB torrent with 256 KiB pieces
// is 80 MiB, but torrents that large use bigger pieces, and the largest
// real-world files (huge datasets with long file lists) stay in the tens of
// MiB; libtorrent's default is 10 MB. MaxDepth is 100, libtorrent's
// default: a v1 torrent needs 5 levels, and a hybrid (BEP 52) torrent's
// "file tree" adds one level per directory.
var TorrentLimits = Limits{MaxSize: 64 << 20, MaxDepth: 100}

// ErrLimit is wrapped by every SyntaxError that reports an input beyond the
// caller's Limits rather than malformed bencode.
var ErrLimit = errors.New("bencode limit exceeded")

// SyntaxError reports malformed or over-limit bencode and where it is.
type SyntaxError struct {
	// Offset is the byte offset in the input where the problem was found.
	Offset int
	// Msg says what is wrong there.
	Msg string
	// Err is ErrLimit when a Limits bound was exceeded, nil otherwise.
	Err error
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("bencode: offset %d: %s", e.Offset, e.Msg) }

// Unwrap lets errors.Is(err, ErrLimit) tell hostile sizes from mere garbage.
func (e *SyntaxError) Unwrap() error { return e.Err }

func syntaxErr(off int, format string, args ...any) error {
	return &SyntaxError{Offset: off, Msg: fmt.Sprintf(format, args...)}
}

func limitErr(off int, format string, args ...any) error {
	return &SyntaxError{Offset: off, Msg: fmt.Sprintf(format, args...), Err: ErrLimit}
}

// CheckBencode reports whether data is exactly one well-formed bencoded
// value within lim: no trailing bytes; lists and dictionaries nested at
// most lim.MaxDepth deep; every string's declared length within the input;
// integers without leading zeros or "-0" that fit an int64; string length
// prefixes without leading zeros; dictionary keys that are strings and
// unique (their order is not checked: real torrents are sometimes not
// canonical). It runs in time linear in len(data), does not recurse, and
// allocates only a nesting stack bounded by MaxDepth plus, for dictionaries
// still open, a 16-byte record per key to find duplicates (at most 4 bytes
// per input byte, for a dictionary of a million one-byte keys).
func CheckBencode(data []byte, lim Limits) error {
	if len(data) > lim.MaxSize {
		return limitErr(0, "input of %d bytes exceeds the limit of %d", len(data), lim.MaxSize)
	}
	n, err := scanValue(data, lim)
	if err != nil {
		return err
	}
	if n != len(data) {
		return trailingErr(n, len(data)-n)
	}
	return nil
}

// trailingErr reports n bytes after a whole value that ends at off.
func trailingErr(off, n int) error {
	return syntaxErr(off, "%d trailing bytes after the value", n)
}

// CheckBencodePrefix checks the first value of data as CheckBencode does
// and returns its length; bytes after it are not examined. BEP 9's
// ut_metadata data message is a dictionary followed by raw metadata, and
// data[n:] is that raw part. lim.MaxSize bounds the value, not the whole of
// data.
func CheckBencodePrefix(data []byte, lim Limits) (n int, err error) {
	n, err = scanValue(data, lim)
	if err != nil {
		return 0, err
	}
	if n > lim.MaxSize {
		return 0, limitErr(0, "value of %d bytes exceeds the limit of %d", n, lim.MaxSize)
	}
	return n, nil
}

// frame is one open list or dictionary during a scan.
type frame struct {
	// open is the offset of the 'l' or 'd'.
	open int
	// dict is true for a dictionary.
	dict bool
	// wantKey is true (dictionaries only) when the next item is a key.
	wantKey bool
	// sorted stays true while the keys are strictly increasing; then no
	// duplicate is possible and the close needs no sort.
	sorted bool
	// keyBase is the index in the scan's key list of this dict's first key.
	keyBase int
}

// span is a half-open byte range [start, end) of the input.
type span struct{ start, end int }

// scanValue checks the value starting at data[0] and returns its length.
// It is iterative: nesting costs one frame, never a Go stack frame.
func scanValue(data []byte, lim Limits) (int, error) {
	stack := make([]frame, 0, min(max(lim.MaxDepth, 0), 16))
	var keys []span // keys of the dictionaries still open, innermost last
	pos := 0
	for {
		if len(stack) > 0 {
			top := &stack[len(stack)-1]
			if pos >= len(data) {
				return 0, unclosedErr(pos, top.dict, top.open)
			}
			if data[pos] == 'e' {
				if top.dict {
					if !top.wantKey {
						k := keys[len(keys)-1]
						return 0, syntaxErr(pos, "dictionary key %s at offset %d has no value", quoteShort(data[k.start:k.end]), k.start)
					}
					if !top.sorted {
						if err := checkDuplicateKeys(data, keys[top.keyBase:]); err != nil {
							return 0, err
						}
					}
					keys = keys[:top.keyBase]
				}
				stack = stack[:len(stack)-1]
				pos++
				if len(stack) == 0 {
					return pos, nil
				}
				if parent := &stack[len(stack)-1]; parent.dict {
					parent.wantKey = true
				}
				continue
			}
			if top.dict && top.wantKey {
				if !isDigit(data[pos]) {
					return 0, keyErr(data, pos)
				}
				start, end, err := scanString(data, pos)
				if err != nil {
					return 0, err
				}
				k := span{start, end}
				if len(keys) > top.keyBase {
					last := keys[len(keys)-1]
					switch bytes.Compare(data[last.start:last.end], data[k.start:k.end]) {
					case 0:
						return 0, syntaxErr(pos, "duplicate dictionary key %s", quoteShort(data[k.start:k.end]))
					case 1:
						top.sorted = false
					}
				}
				keys = append(keys, k)
				top.wantKey = false
				pos = end
				continue
			}
		}
		end, open, err := scanItem(data, pos)
		if err != nil {
			return 0, err
		}
		if open {
			if len(stack) >= lim.MaxDepth {
				return 0, limitErr(pos, "nesting deeper than %d", lim.MaxDepth)
			}
			stack = append(stack, frame{open: pos, dict: data[pos] == 'd', wantKey: true, sorted: true, keyBase: len(keys)})
			pos = end
			continue
		}
		pos = end
		if len(stack) == 0 {
			return pos, nil
		}
		if top := &stack[len(stack)-1]; top.dict {
			top.wantKey = true
		}
	}
}

// scanItem reads the token that a value starts with at data[pos]: a whole
// integer or string (end is the offset just past it), or the 'l' or 'd'
// that opens a list or a dictionary (open is true, end is pos+1). The
// checker (scanValue) and the walker (skipValue, and so Value) read values
// through it alone, so they accept exactly the same tokens.
func scanItem(data []byte, pos int) (end int, open bool, err error) {
	if pos < len(data) {
		switch c := data[pos]; {
		case c == 'i':
			_, end, err = scanInt(data, pos)
			return end, false, err
		case isDigit(c):
			_, end, err = scanString(data, pos)
			return end, false, err
		case c == 'l' || c == 'd':
			return pos + 1, true, nil
		}
	}
	return 0, false, noValueErr(data, pos)
}

// noValueErr is scanItem's error where no value starts at data[pos].
func noValueErr(data []byte, pos int) error {
	if pos >= len(data) {
		return syntaxErr(pos, "unexpected end of input, want a value")
	}
	return syntaxErr(pos, "unexpected byte %q, want a value", data[pos])
}

// skipValue returns the offset just past the value at data[pos]. It reads
// tokens with scanItem, as the checker does, but counts nesting instead of
// keeping a stack and does not look at dictionary keys (a key is a string,
// skipped like any other): cheap on input that CheckBencode accepted, and
// harmless on any other, where it returns an error, never reads outside
// data and does not recurse.
func skipValue(data []byte, pos int) (int, error) {
	depth := 0
	for {
		if depth > 0 && pos < len(data) && data[pos] == 'e' {
			depth--
			pos++
		} else {
			end, open, err := scanItem(data, pos)
			if err != nil {
				return 0, err
			}
			pos = end
			if open {
				depth++
				continue
			}
		}
		if depth == 0 {
			return pos, nil
		}
	}
}

// checkDuplicateKeys sorts the key spans of one closed, unsorted
// dictionary and reports two equal neighbours. The spans are discarded by
// the caller afterwards, so sorting them in place is fine.
func checkDuplicateKeys(data []byte, keys []span) error {
	slices.SortFunc(keys, func(a, b span) int {
		if c := bytes.Compare(data[a.start:a.end], data[b.start:b.end]); c != 0 {
			return c
		}
		return a.start - b.start
	})
	for i := 1; i < len(keys); i++ {
		a, b := keys[i-1], keys[i]
		if bytes.Equal(data[a.start:a.end], data[b.start:b.end]) {
			return syntaxErr(b.start, "duplicate dictionary key %s (first at offset %d)", quoteShort(data[b.start:b.end]), a.start)
		}
	}
	return nil
}

// scanInt parses the integer "i...e" at data[pos] and returns its value and
// the offset just past the 'e'.
func scanInt(data []byte, pos int) (v int64, end int, err error) {
	j := pos + 1
	neg := j < len(data) && data[j] == '-'
	if neg {
		j++
	}
	digits := j
	for j < len(data) && isDigit(data[j]) {
		j++
	}
	switch {
	case j >= len(data):
		return 0, 0, syntaxErr(j, "unexpected end of input inside the integer at offset %d", pos)
	case data[j] != 'e':
		return 0, 0, syntaxErr(j, "unexpected byte %q in the integer at offset %d", data[j], pos)
	case j == digits:
		return 0, 0, syntaxErr(pos, "integer has no digits")
	case data[digits] == '0' && j-digits > 1:
		return 0, 0, syntaxErr(pos, "integer has a leading zero")
	case neg && data[digits] == '0':
		return 0, 0, syntaxErr(pos, "integer is negative zero")
	}
	limit := uint64(1<<63 - 1)
	if neg {
		limit++
	}
	var u uint64
	for _, c := range data[digits:j] {
		d := uint64(c - '0')
		if u > (limit-d)/10 {
			return 0, 0, syntaxErr(pos, "integer %s does not fit 64 bits", shorten(data[pos+1:j]))
		}
		u = u*10 + d
	}
	if neg {
		return int64(-u), j + 1, nil // -(1<<63) wraps to itself, as wanted
	}
	return int64(u), j + 1, nil
}

// scanString parses the string "N:..." at data[pos] and returns the span of
// its contents.
func scanString(data []byte, pos int) (start, end int, err error) {
	j := pos
	for j < len(data) && isDigit(data[j]) {
		j++
	}
	switch {
	case j >= len(data):
		return 0, 0, syntaxErr(j, "unexpected end of input inside the string length at offset %d", pos)
	case data[j] != ':':
		return 0, 0, syntaxErr(j, "unexpected byte %q in the string length at offset %d, want ':'", data[j], pos)
	case data[pos] == '0' && j-pos > 1:
		return 0, 0, syntaxErr(pos, "string length has a leading zero")
	}
	left := len(data) - (j + 1)
	n := 0
	for _, c := range data[pos:j] {
		n = n*10 + int(c-'0')
		if n > left {
			return 0, 0, syntaxErr(pos, "string of declared length %s exceeds the %d bytes left", shorten(data[pos:j]), left)
		}
	}
	return j + 1, j + 1 + n, nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// unclosedErr reports input that ends at pos, inside the list or the
// dictionary opened at offset open.
func unclosedErr(pos int, dict bool, open int) error {
	name := "list"
	if dict {
		name = "dictionary"
	}
	return syntaxErr(pos, "unexpected end of input inside the %s opened at offset %d", name, open)
}

// keyErr reports a dictionary key at data[pos] that is not a string.
func keyErr(data []byte, pos int) error {
	return syntaxErr(pos, "dictionary key is not a string (starts with %q)", data[pos])
}

// shorten keeps error messages small when hostile input has huge tokens.
func shorten(b []byte) string {
	const max = 40
	if len(b) > max {
		return string(b[:max]) + "..."
	}
	return string(b)
}

func quoteShort(b []byte) string {
	const max = 40
	if len(b) > max {
		return fmt.Sprintf("%q...", b[:max])
	}
	return fmt.Sprintf("%q", b)
}
