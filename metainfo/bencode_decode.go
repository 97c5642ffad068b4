package metainfo

import (
	"bytes"
	"fmt"

	"github.com/jackpal/bencode-go"
)

// Decode checks data with CheckBencode and lim, then decodes it with
// github.com/jackpal/bencode-go into generic values: int64, string,
// []any and map[string]any. Mind the memory note on Limits: generic
// values can take several times the input's size.
func Decode(data []byte, lim Limits) (v any, err error) {
	if err := CheckBencode(data, lim); err != nil {
		return nil, err
	}
	defer recoverDecode(&err)
	v, err = bencode.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("bencode: decode: %w", err)
	}
	return v, nil
}

// Unmarshal checks data with CheckBencode and lim, then fills the value
// that v points to with github.com/jackpal/bencode-go's Unmarshal (struct
// fields matched by `bencode:"key"` tags or case-insensitive names; keys
// without a field are dropped). That library panics on some type
// mismatches (an integer where the struct has a string or a slice); such a
// panic is returned as an error. A string where the struct has an integer,
// or a list where it has a string, is silently ignored by the library:
// check required fields after Unmarshal.
func Unmarshal(data []byte, lim Limits, v any) (err error) {
	if err := CheckBencode(data, lim); err != nil {
		return err
	}
	defer recoverDecode(&err)
	if err := bencode.Unmarshal(bytes.NewReader(data), v); err != nil {
		return fmt.Errorf("bencode: unmarshal: %w", err)
	}
	return nil
}

// recoverDecode turns a panic inside the decoder into an error: a type
// mismatch in a peer's message must cost that peer, not the process.
func recoverDecode(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("bencode: decoder rejected the input: %v", r)
	}
}
