package metainfo

import (
	"fmt"
	"strconv"
)

// Kind is the type of a bencoded value.
type Kind uint8

// The kinds of bencoded values.
const (
	// KindInvalid is no value: the zero Value (an absent key), or bytes
	// that do not start a bencoded value.
	KindInvalid Kind = iota
	// KindInt is an integer, "i42e".
	KindInt
	// KindString is a byte string, "4:spam".
	KindString
	// KindList is a list, "l...e".
	KindList
	// KindDict is a dictionary, "d...e".
	KindDict
)

// String names the kind for messages: "integer", "string", "list",
// "dictionary", or "nothing" for KindInvalid.
func (k Kind) String() string {
	switch k {
	case KindInt:
		return "integer"
	case KindString:
		return "string"
	case KindList:
		return "list"
	case KindDict:
		return "dictionary"
	}
	return "nothing"
}

// article is the name with its article: "want an integer, got a string".
func (k Kind) article() string {
	switch k {
	case KindInt:
		return "an integer"
	case KindInvalid:
		return "nothing"
	}
	return "a " + k.String()
}

// kindError is a value of another kind than a reader wants: the wanted
// kind in the high four bits, the kind found in the low four. It is one
// byte, so returning it as an error allocates nothing: a reader that skips
// values of the wrong kind (a tracker's peer list of a million entries)
// pays nothing per value.
type kindError uint8

func kindErr(want, got Kind) error { return kindError(want<<4 | got) }

func (e kindError) Error() string {
	return "want " + Kind(e>>4).article() + ", got " + Kind(e&0xf).article()
}

// Value is one bencoded value read in place: it holds the input and where
// the value stands in it, and its readers take what they are asked for
// straight from those bytes. Nothing is decoded ahead and no tree is built:
// walking a list of a million empty dictionaries allocates nothing, and
// strings come back aliasing the input. It is the one reader of checked
// bencode in btfs: Parse reads torrents with it, engine/tracker announce
// replies and engine/wire extension messages.
//
// A Value is meant for input that CheckBencode (or CheckBencodePrefix, cut
// to the length it returned) has accepted. Then the only error its readers
// return is a value of another kind than asked for, and Raw, Span and Name
// are exact. On any other input every method still stays within the
// input, takes no memory in proportion to its nesting, and returns an
// error rather than panicking; but it may accept what the checker refuses
// (a duplicate key, nesting beyond any limit).
//
// The zero Value is an absent one: Exists is false and every reader
// returns an error. Fields and Lookup return it for a missing key.
type Value struct {
	// in is the input the value is part of; nil in the zero Value.
	in *input
	// start and end bound the value: it is in.data[start:end]. Values
	// from a walk are exact; a root is all of the input, and its readers
	// report bytes after the value as an error.
	start, end int
}

// input is what the Values of one input share.
type input struct {
	// data is the whole input given to ValueOf; Span and Name are
	// relative to it.
	data []byte
	// root is the name of the root value in Name: "" but for a bare info
	// dictionary, which is named "info".
	root string
}

// ValueOf returns the value that data holds: all of data should be one
// value that CheckBencode accepted. It reads nothing yet; it allocates the
// one small record that all Values read from data share, so that a Value
// is three words, cheap to pass and to return.
func ValueOf(data []byte) Value { return valueOf(data, "") }

// valueOf is ValueOf with a name for the root.
func valueOf(data []byte, root string) Value {
	return Value{in: &input{data: data, root: root}, end: len(data)}
}

// at is the value at start:end of the same input as v.
func (v Value) at(start, end int) Value { return Value{in: v.in, start: start, end: end} }

// src is the input up to v's end: readers of v look no further.
func (v Value) src() []byte {
	if v.in == nil {
		return nil
	}
	return v.in.data[:v.end]
}

// Exists reports whether v is a value rather than the zero Value that
// Fields and Lookup return for an absent key.
func (v Value) Exists() bool { return v.end > v.start }

// Kind is the kind of v, from its first byte.
func (v Value) Kind() Kind {
	if !v.Exists() {
		return KindInvalid
	}
	switch c := v.in.data[v.start]; {
	case c == 'i':
		return KindInt
	case isDigit(c):
		return KindString
	case c == 'l':
		return KindList
	case c == 'd':
		return KindDict
	}
	return KindInvalid
}

// Raw is v's bytes exactly as they stand in the input, aliasing it. The
// info-hash is the SHA-1 of the info dictionary's Raw bytes: hashing a
// re-encoding would give another hash for a non-canonical torrent.
func (v Value) Raw() []byte { return v.src()[v.start:v.end:v.end] }

// Span is where v stands in the input given to ValueOf: Raw is
// input[start:end].
func (v Value) Span() (start, end int) { return v.start, v.end }

// Int returns the value of an integer.
func (v Value) Int() (int64, error) {
	if k := v.Kind(); k != KindInt {
		return 0, kindErr(KindInt, k)
	}
	n, end, err := scanInt(v.src(), v.start)
	if err == nil {
		err = v.ends(end)
	}
	return n, err
}

// Bytes returns the contents of a string, aliasing the input (appending
// to them does not write into it).
func (v Value) Bytes() ([]byte, error) {
	if k := v.Kind(); k != KindString {
		return nil, kindErr(KindString, k)
	}
	start, end, err := scanString(v.src(), v.start)
	if err == nil {
		err = v.ends(end)
	}
	if err != nil {
		return nil, err
	}
	return v.in.data[start:end:end], nil
}

// Str returns the contents of a string as a Go string (a copy).
func (v Value) Str() (string, error) {
	b, err := v.Bytes()
	return string(b), err
}

// Elems calls fn with the index and the value of each element of the list
// v, in order, and returns fn's first error. When v is not a list, it
// returns an error without calling fn.
func (v Value) Elems(fn func(i int, elem Value) error) error {
	var c items
	if err := c.open(v, KindList); err != nil {
		return err
	}
	for c.next() {
		if err := fn(c.i-1, c.item()); err != nil {
			return err
		}
	}
	return c.err
}

// Entries calls fn with each key (aliasing the input) and value of the
// dictionary v, in the order they stand, and returns fn's first error.
// When v is not a dictionary, it returns an error without calling fn.
func (v Value) Entries(fn func(key []byte, val Value) error) error {
	var c items
	if err := c.open(v, KindDict); err != nil {
		return err
	}
	for c.next() {
		if err := fn(c.key, c.item()); err != nil {
			return err
		}
	}
	return c.err
}

// Fields finds the values of several keys of the dictionary v in one pass:
// got[i] is set to the value of keys[i], or to the zero Value when that key
// is absent. got is the caller's and must be at least as long as keys, so
// that reading a million dictionaries allocates no result slices.
func (v Value) Fields(got []Value, keys ...string) error {
	got = got[:len(keys)]
	for i := range got {
		got[i] = Value{} // not clear: a call, for a slice this short
	}
	var c items
	if err := c.open(v, KindDict); err != nil {
		return err
	}
	for c.next() {
		for i, k := range keys {
			if string(c.key) == k {
				got[i] = c.item()
			}
		}
	}
	return c.err
}

// Lookup returns the value of key in the dictionary v, or the zero Value
// when the key is absent. It reads no further than the key.
func (v Value) Lookup(key string) (Value, error) {
	var c items
	if err := c.open(v, KindDict); err != nil {
		return Value{}, err
	}
	for c.next() {
		if string(c.key) == key {
			return c.item(), nil
		}
	}
	return Value{}, c.err
}

// Name is v's field name for error messages: dictionary keys joined by
// dots and list indexes in brackets, from the root ("info.files[3].path";
// "" for the root itself). It walks from the root to v, so it costs a scan
// of what precedes v: call it on the way to an error, not for every value.
func (v Value) Name() string {
	if v.in == nil {
		return ""
	}
	name := v.in.root
	cur := Value{in: v.in, end: len(v.in.data)}
	for cur.start < v.start {
		next, key, i, ok := cur.itemAround(v.start)
		switch {
		case !ok:
			return name // v is not from a walk of this input
		case key == nil:
			name += "[" + strconv.Itoa(i) + "]"
		case name != "":
			name += "." + string(key)
		default:
			name = string(key)
		}
		cur = next
	}
	return name
}

// itemAround finds the item of the list or dictionary v that holds the
// offset off, with its key (nil in a list) and index.
func (v Value) itemAround(off int) (item Value, key []byte, i int, ok bool) {
	var c items
	if err := c.open(v, v.Kind()); err != nil {
		return Value{}, nil, 0, false
	}
	for c.next() {
		if c.start <= off && off < c.pos {
			return c.item(), c.key, c.i - 1, true
		}
	}
	return Value{}, nil, 0, false
}

// items is the one loop over the items of a list or a dictionary, behind
// Elems, Entries, Fields, Lookup and Name: a cursor that next moves along.
type items struct {
	// v is the list or the dictionary.
	v Value
	// dict is true for a dictionary.
	dict bool
	// pos is the offset of the next item (its key, in a dictionary).
	pos int
	// i is the number of items next moved over: the index of the item
	// next moved to is i-1.
	i int
	// start is where the value of the item next moved to starts; it ends
	// at pos.
	start int
	// key is the key of the item next moved to (dictionaries only; nil in
	// a list), aliasing the input.
	key []byte
	// err is why next returned false: nil at the end of the container.
	err error
}

// open starts c, a zero items, on v, which must be of kind want: KindList
// or KindDict.
func (c *items) open(v Value, want Kind) error {
	if k := v.Kind(); k != want || (k != KindList && k != KindDict) {
		return kindErr(want, k)
	}
	// Field by field: a composite literal copied into *c costs more than
	// the rest of a walk over an empty dictionary.
	c.v, c.dict, c.pos = v, want == KindDict, v.start+1
	return nil
}

// next moves to the next item, whose end skipValue finds: c.item is its
// value and c.key its key. It returns false at the end of the container,
// and on malformed input (then c.err says why).
func (c *items) next() bool {
	data := c.v.src()
	pos := c.pos
	if pos >= len(data) || data[pos] == 'e' || (c.dict && !isDigit(data[pos])) {
		c.err = c.stop()
		return false
	}
	if c.dict {
		ks, ke, err := scanString(data, pos)
		if err != nil {
			c.err = err
			return false
		}
		c.key, pos = data[ks:ke:ke], ke
	}
	end, err := skipValue(data, pos)
	if err != nil {
		c.err = err
		return false
	}
	c.i++
	c.start, c.pos = pos, end
	return true
}

// item is the value of the item next moved to.
func (c *items) item() Value { return c.v.at(c.start, c.pos) }

// stop is next's answer where no item starts: nil at the closing 'e' that
// ends the value, an error otherwise. It is apart from next to keep next's
// frame small: next runs once per item.
func (c *items) stop() error {
	data := c.v.src()
	switch pos := c.pos; {
	case pos >= len(data):
		return unclosedErr(pos, c.dict, c.v.start)
	case data[pos] == 'e':
		return c.v.ends(pos + 1)
	default:
		return keyErr(data, pos)
	}
}

// ends checks that v's last token ends at end: on a root of unchecked
// input, bytes may follow the value.
func (v Value) ends(end int) error {
	if end != v.end {
		return trailingErr(end, v.end-end)
	}
	return nil
}

// DictValueSpan returns the byte range data[start:end] of the value of key
// in the dictionary that data holds, exactly as it stands in data: the
// Span of ValueOf(data).Lookup(key), with an error when the key is absent.
// Like Lookup it reads no further than the key (it does not look for
// duplicate keys or check nesting depth), takes no memory in proportion to
// the input, and never reads outside data; run CheckBencode on data first
// to validate all of it.
func DictValueSpan(data []byte, key string) (start, end int, err error) {
	root := ValueOf(data)
	if root.Kind() != KindDict {
		return 0, 0, syntaxErr(0, "not a dictionary")
	}
	v, err := root.Lookup(key)
	if err != nil {
		return 0, 0, err
	}
	if !v.Exists() {
		return 0, 0, fmt.Errorf("bencode: key %q not found in the dictionary", key)
	}
	start, end = v.Span()
	return start, end, nil
}
