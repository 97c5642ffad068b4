package tracker

import (
	"errors"
	"fmt"
)

// A tracker reply is read in two steps: metainfo.CheckBencode validates the
// whole body within bounds, then the small walker below reads only the
// keys this package uses, straight from the body. It builds no generic
// tree: a hostile reply of a million empty dictionaries costs nothing more
// than its bytes, where a generic decoder would allocate a map for each.
// The walker still checks every bound itself, so it cannot panic even on
// input that skipped the check (the fuzz target feeds it both).

// errBadBencode is returned by the walker on input it cannot read.
var errBadBencode = errors.New("malformed bencode")

// bkind names the type of the value at a position, for error messages.
func bkind(b []byte, pos int) string {
	if pos >= len(b) {
		return "nothing"
	}
	switch c := b[pos]; {
	case c == 'i':
		return "integer"
	case c == 'l':
		return "list"
	case c == 'd':
		return "dictionary"
	case c >= '0' && c <= '9':
		return "string"
	}
	return "nothing"
}

// bstring reads the string at pos and returns its bytes (aliasing b) and
// the position after it.
func bstring(b []byte, pos int) ([]byte, int, error) {
	n, j := 0, pos
	for ; j < len(b) && b[j] >= '0' && b[j] <= '9'; j++ {
		n = n*10 + int(b[j]-'0')
		if n > len(b) {
			return nil, 0, errBadBencode
		}
	}
	if j == pos || j >= len(b) || b[j] != ':' || n > len(b)-j-1 {
		return nil, 0, errBadBencode
	}
	return b[j+1 : j+1+n], j + 1 + n, nil
}

// bint reads the integer at pos and returns it and the position after it.
// A value outside int64 is an error (CheckBencode already refuses it).
func bint(b []byte, pos int) (int64, int, error) {
	if pos >= len(b) || b[pos] != 'i' {
		return 0, 0, errBadBencode
	}
	j := pos + 1
	neg := j < len(b) && b[j] == '-'
	if neg {
		j++
	}
	limit := uint64(1<<63 - 1)
	if neg {
		limit++ // -(1<<63) fits
	}
	start := j
	var u uint64
	for ; j < len(b) && b[j] >= '0' && b[j] <= '9'; j++ {
		d := uint64(b[j] - '0')
		if u > (limit-d)/10 {
			return 0, 0, errBadBencode
		}
		u = u*10 + d
	}
	if j == start || j >= len(b) || b[j] != 'e' {
		return 0, 0, errBadBencode
	}
	if neg {
		return int64(-u), j + 1, nil // -(1<<63) wraps to itself
	}
	return int64(u), j + 1, nil
}

// bskip returns the position after the value at pos. It is iterative: the
// nesting depth is a counter, not the Go stack.
func bskip(b []byte, pos int) (int, error) {
	depth := 0
	for {
		if pos >= len(b) {
			return 0, errBadBencode
		}
		switch c := b[pos]; {
		case c == 'i':
			_, end, err := bint(b, pos)
			if err != nil {
				return 0, err
			}
			pos = end
		case c >= '0' && c <= '9':
			_, end, err := bstring(b, pos)
			if err != nil {
				return 0, err
			}
			pos = end
		case c == 'l' || c == 'd':
			depth++
			pos++
			continue
		case c == 'e' && depth > 0:
			depth--
			pos++
		default:
			return 0, errBadBencode
		}
		if depth == 0 {
			return pos, nil
		}
	}
}

// bdict calls fn for each entry of the dictionary at pos with the key and
// the position of its value, and returns the position after the
// dictionary. fn returns the position after the value (bskip when it
// does not read it).
func bdict(b []byte, pos int, fn func(key []byte, val int) (int, error)) (int, error) {
	if pos >= len(b) || b[pos] != 'd' {
		return 0, fmt.Errorf("%w: want a dictionary, found a %s", errBadBencode, bkind(b, pos))
	}
	pos++
	for {
		if pos >= len(b) {
			return 0, errBadBencode
		}
		if b[pos] == 'e' {
			return pos + 1, nil
		}
		key, val, err := bstring(b, pos)
		if err != nil {
			return 0, err
		}
		next, err := fn(key, val)
		if err != nil {
			return 0, err
		}
		if next <= val {
			return 0, errBadBencode // fn did not consume the value
		}
		pos = next
	}
}

// blist calls fn with the position of each element of the list at pos and
// returns the position after the list; fn returns the position after the
// element.
func blist(b []byte, pos int, fn func(elem int) (int, error)) (int, error) {
	if pos >= len(b) || b[pos] != 'l' {
		return 0, fmt.Errorf("%w: want a list, found a %s", errBadBencode, bkind(b, pos))
	}
	pos++
	for {
		if pos >= len(b) {
			return 0, errBadBencode
		}
		if b[pos] == 'e' {
			return pos + 1, nil
		}
		next, err := fn(pos)
		if err != nil {
			return 0, err
		}
		if next <= pos {
			return 0, errBadBencode // fn did not consume the element
		}
		pos = next
	}
}
