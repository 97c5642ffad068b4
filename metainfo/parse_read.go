package metainfo

import "errors"

// Parse's readers are Value's, with the field's name put on their errors:
// "metainfo: info.files[0].path[0]: want a string, got an integer".

// named puts v's name on an error of v's readers. An error that names a
// field already (from a callback of each) passes unchanged.
func named(v Value, err error) error {
	if err == nil {
		return nil
	}
	if fe := (*FieldError)(nil); errors.As(err, &fe) {
		return err
	}
	return &FieldError{Field: v.Name(), Err: err}
}

func str(v Value) (string, error) {
	s, err := v.Str()
	return s, named(v, err)
}

func integer(v Value) (int64, error) {
	n, err := v.Int()
	return n, named(v, err)
}

func byteString(v Value) ([]byte, error) {
	b, err := v.Bytes()
	return b, named(v, err)
}

// each calls fn with every element of the list v, in order, and stops at
// the first error.
func each(v Value, fn func(elem Value) error) error {
	return named(v, v.Elems(func(_ int, elem Value) error { return fn(elem) }))
}

// fields is v.Fields: one pass over a dictionary for all the keys Parse
// reads from it.
func fields(v Value, got []Value, keys ...string) error {
	return named(v, v.Fields(got, keys...))
}
