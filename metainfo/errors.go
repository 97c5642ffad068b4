package metainfo

import (
	"errors"
	"fmt"
)

// ErrUnsupported is wrapped by errors about valid input that btfs does not
// handle: v2-only torrents (BEP 52) and magnet links without a v1
// info-hash (both ErrV2Only), meta versions other than 1 and 2.
var ErrUnsupported = errors.New("unsupported")

// FieldError is a problem with one field of a torrent or magnet link; its
// message names the field so that a user can find it
// ("metainfo: info.files[3].path: component \"..\" escapes the torrent").
type FieldError struct {
	// Field is the dotted name of the field, with list indexes.
	Field string
	// Err says what is wrong with it.
	Err error
}

func (e *FieldError) Error() string { return "metainfo: " + e.Field + ": " + e.Err.Error() }

// Unwrap exposes the cause (a *SyntaxError, ErrUnsupported, ...).
func (e *FieldError) Unwrap() error { return e.Err }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Err: fmt.Errorf(format, args...)}
}
