package metainfo

import (
	"fmt"
	"strconv"
)

// DictValueSpan returns the byte range data[start:end] of the value of key
// in the dictionary that data starts with, exactly as it stands in data.
// The info-hash is the SHA-1 of the "info" value taken this way: hashing a
// re-encoding would give another hash for a non-canonical file.
//
// It examines only what it needs to find the value (it does not look for
// duplicate keys or check nesting depth), takes no more memory than a
// counter, and never reads outside data; run CheckBencode on data first to
// validate all of it. It returns an error when data is not a dictionary,
// when the key is absent, or when it meets malformed bencode on the way.
func DictValueSpan(data []byte, key string) (start, end int, err error) {
	if len(data) == 0 || data[0] != 'd' {
		return 0, 0, syntaxErr(0, "not a dictionary")
	}
	pos := 1
	for {
		if pos >= len(data) {
			return 0, 0, syntaxErr(pos, "unexpected end of input inside the dictionary opened at offset 0")
		}
		if data[pos] == 'e' {
			return 0, 0, fmt.Errorf("bencode: key %q not found in the dictionary", key)
		}
		if !isDigit(data[pos]) {
			return 0, 0, syntaxErr(pos, "dictionary key is not a string (starts with %q)", data[pos])
		}
		ks, ke, err := scanString(data, pos)
		if err != nil {
			return 0, 0, err
		}
		vend, err := skipValue(data, ke)
		if err != nil {
			return 0, 0, err
		}
		if string(data[ks:ke]) == key {
			return ke, vend, nil
		}
		pos = vend
	}
}

// skipValue returns the offset just past the value starting at data[pos].
// It checks tokens but counts nesting instead of keeping a stack, so it is
// cheap on input that CheckBencode has already accepted and harmless on any
// other input.
func skipValue(data []byte, pos int) (int, error) {
	depth := 0
	for {
		if pos >= len(data) {
			return 0, syntaxErr(pos, "unexpected end of input, want a value")
		}
		switch c := data[pos]; {
		case c == 'i':
			_, end, err := scanInt(data, pos)
			if err != nil {
				return 0, err
			}
			pos = end
		case isDigit(c):
			_, end, err := scanString(data, pos)
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
			return 0, syntaxErr(pos, "unexpected byte %q, want a value", c)
		}
		if depth == 0 {
			return pos, nil
		}
	}
}

// node is one value inside input that CheckBencode accepted, with the name
// of the field it came from for error messages ("info.files[3].path").
// Parse walks torrents with nodes instead of decoding them into generic Go
// values: it takes exactly the types it expects, names the field when a type
// is wrong, and allocates only for what it keeps.
type node struct {
	// b is exactly the value's bytes.
	b []byte
	// parent is the name of the enclosing value ("" at the root).
	parent string
	// key is the dictionary key this value was found under, or "".
	key string
	// idx is the list index this value was found at, or -1.
	idx int
}

// name is the dotted field name used in errors. It is built on demand:
// most nodes never need it.
func (n node) name() string {
	s := n.parent
	if n.key != "" {
		if s != "" {
			s += "."
		}
		s += n.key
	}
	if n.idx >= 0 {
		s += "[" + strconv.Itoa(n.idx) + "]"
	}
	return s
}

func (n node) typeName() string {
	switch c := n.b[0]; {
	case c == 'i':
		return "an integer"
	case c == 'l':
		return "a list"
	case c == 'd':
		return "a dictionary"
	default:
		return "a string"
	}
}

func (n node) wrongType(want string) error {
	return fieldErr(n.name(), "want %s, got %s", want, n.typeName())
}

// bytes returns a string's contents without copying.
func (n node) bytes() ([]byte, error) {
	if !isDigit(n.b[0]) {
		return nil, n.wrongType("a string")
	}
	start, end, err := scanString(n.b, 0)
	if err != nil {
		return nil, fieldErr(n.name(), "%w", err)
	}
	return n.b[start:end], nil
}

func (n node) str() (string, error) {
	b, err := n.bytes()
	return string(b), err
}

func (n node) int() (int64, error) {
	if n.b[0] != 'i' {
		return 0, n.wrongType("an integer")
	}
	v, _, err := scanInt(n.b, 0)
	if err != nil {
		return 0, fieldErr(n.name(), "%w", err)
	}
	return v, nil
}

// each calls fn with every element of a list, in order, and stops at the
// first error.
func (n node) each(fn func(elem node) error) error {
	if n.b[0] != 'l' {
		return n.wrongType("a list")
	}
	name := n.name()
	pos := 1
	for i := 0; pos < len(n.b) && n.b[pos] != 'e'; i++ {
		end, err := skipValue(n.b, pos)
		if err != nil {
			return fieldErr(name, "%w", err)
		}
		if err := fn(node{b: n.b[pos:end], parent: name, idx: i}); err != nil {
			return err
		}
		pos = end
	}
	return nil
}

// fields finds, in one pass over a dictionary, the values of the wanted
// keys: got[i] is set to the value of want[i], or left with a nil b when
// the key is absent. got is the caller's, so that walking a million file
// dictionaries does not allocate a million result slices.
func (n node) fields(got []node, want ...string) error {
	if n.b[0] != 'd' {
		return n.wrongType("a dictionary")
	}
	name := n.name()
	clear(got)
	pos := 1
	for pos < len(n.b) && n.b[pos] != 'e' {
		ks, ke, err := scanString(n.b, pos)
		if err != nil {
			return fieldErr(name, "%w", err)
		}
		end, err := skipValue(n.b, ke)
		if err != nil {
			return fieldErr(name, "%w", err)
		}
		for i, w := range want {
			if string(n.b[ks:ke]) == w {
				got[i] = node{b: n.b[ke:end], parent: name, key: w, idx: -1}
			}
		}
		pos = end
	}
	return nil
}

// present reports whether fields found the key.
func (n node) present() bool { return n.b != nil }
