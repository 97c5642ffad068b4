package metainfo

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// walk reads v and everything in it into the generic values Decode gives
// (int64, string, []any, map[string]any). While names is above 0 it also
// checks, for that many values, that Name is the path the walk took.
func walk(t *testing.T, v Value, path string, names *int) (any, error) {
	if *names > 0 {
		*names--
		if got := v.Name(); got != path {
			t.Fatalf("Name() = %q, want %q", got, path)
		}
	}
	switch v.Kind() {
	case KindInt:
		return v.Int()
	case KindString:
		return v.Str()
	case KindList:
		l := []any{}
		err := v.Elems(func(i int, elem Value) error {
			e, err := walk(t, elem, fmt.Sprintf("%s[%d]", path, i), names)
			l = append(l, e)
			return err
		})
		return l, err
	case KindDict:
		d := map[string]any{}
		err := v.Entries(func(key []byte, val Value) error {
			p := string(key)
			if path != "" {
				p = path + "." + p
			}
			e, err := walk(t, val, p, names)
			d[string(key)] = e
			return err
		})
		return d, err
	}
	// No value starts here: the readers say why.
	_, err := v.Int()
	return nil, err
}

func TestValueReaders(t *testing.T) {
	for _, tc := range []struct {
		in    string
		kind  Kind
		n     int64
		s     string
		isErr string // what Int and Bytes report for the kind they do not read
	}{
		{"i42e", KindInt, 42, "", "want a string, got an integer"},
		{"i-9223372036854775808e", KindInt, -1 << 63, "", "want a string, got an integer"},
		{"0:", KindString, 0, "", "want an integer, got a string"},
		{"4:spam", KindString, 0, "spam", "want an integer, got a string"},
		{"le", KindList, 0, "", "want an integer, got a list"},
		{"d1:ai1ee", KindDict, 0, "", "want an integer, got a dictionary"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			v := ValueOf([]byte(tc.in))
			if v.Kind() != tc.kind || !v.Exists() || string(v.Raw()) != tc.in {
				t.Fatalf("Kind %v, Exists %v, Raw %q", v.Kind(), v.Exists(), v.Raw())
			}
			if start, end := v.Span(); start != 0 || end != len(tc.in) {
				t.Fatalf("Span = %d, %d", start, end)
			}
			n, nerr := v.Int()
			s, serr := v.Str()
			switch tc.kind {
			case KindInt:
				if nerr != nil || n != tc.n || serr == nil || serr.Error() != tc.isErr {
					t.Fatalf("Int = %d, %v; Str error %v", n, nerr, serr)
				}
			case KindString:
				if serr != nil || s != tc.s || nerr == nil || nerr.Error() != tc.isErr {
					t.Fatalf("Str = %q, %v; Int error %v", s, serr, nerr)
				}
			default:
				if nerr == nil || nerr.Error() != tc.isErr || serr == nil {
					t.Fatalf("Int error %v, Str error %v", nerr, serr)
				}
			}
		})
	}
}

func TestValueWalk(t *testing.T) {
	data := []byte("d5:filesld4:pathl1:a1:beed4:pathl1:ceee4:name1:x5:emptyde1:ni7ee")
	root := ValueOf(data)

	var got [4]Value
	if err := root.Fields(got[:], "name", "files", "absent", "n"); err != nil {
		t.Fatal(err)
	}
	name, files, absent, n := got[0], got[1], got[2], got[3]
	if s, err := name.Str(); err != nil || s != "x" || name.Name() != "name" {
		t.Fatalf("name = %q, %v, Name %q", s, err, name.Name())
	}
	if i, err := n.Int(); err != nil || i != 7 {
		t.Fatalf("n = %d, %v", i, err)
	}
	if absent.Exists() || absent.Kind() != KindInvalid || absent.Raw() != nil || absent.Name() != "" {
		t.Fatalf("absent key: %+v", absent)
	}
	if _, err := absent.Int(); err == nil || err.Error() != "want an integer, got nothing" {
		t.Fatalf("Int of an absent value: %v", err)
	}
	if err := absent.Elems(func(int, Value) error { t.Fatal("called"); return nil }); err == nil {
		t.Fatal("Elems of an absent value succeeded")
	}

	// Names of values deep inside, found by walking from the root.
	var paths []string
	err := files.Elems(func(i int, file Value) error {
		p, err := file.Lookup("path")
		if err != nil {
			return err
		}
		return p.Elems(func(j int, c Value) error {
			s, err := c.Str()
			paths = append(paths, fmt.Sprintf("%s=%s", c.Name(), s))
			return err
		})
	})
	want := []string{"files[0].path[0]=a", "files[0].path[1]=b", "files[1].path[0]=c"}
	if err != nil || !reflect.DeepEqual(paths, want) {
		t.Fatalf("paths %q, %v; want %q", paths, err, want)
	}

	// Entries keeps the input's order; Lookup stops at the key.
	var keys []string
	if err := root.Entries(func(k []byte, _ Value) error { keys = append(keys, string(k)); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"files", "name", "empty", "n"}; !reflect.DeepEqual(keys, want) {
		t.Fatalf("keys %q, want %q", keys, want)
	}
	empty, err := root.Lookup("empty")
	if err != nil || string(empty.Raw()) != "de" {
		t.Fatalf("Lookup(empty) = %q, %v", empty.Raw(), err)
	}
	if start, end := empty.Span(); string(data[start:end]) != "de" {
		t.Fatalf("Span of empty = %d, %d", start, end)
	}
	if v, err := root.Lookup("nope"); err != nil || v.Exists() {
		t.Fatalf("Lookup(nope) = %+v, %v", v, err)
	}

	// fn's error stops the walk and comes back as is.
	stop := errors.New("stop")
	calls := 0
	if err := files.Elems(func(int, Value) error { calls++; return stop }); err != stop || calls != 1 {
		t.Fatalf("Elems = %v after %d calls, want stop after 1", err, calls)
	}

	// Bytes aliases the input but cannot be appended into it.
	b, _ := name.Bytes()
	_ = append(b, 'Z')
	if !bytes.Equal(data, []byte("d5:filesld4:pathl1:a1:beed4:pathl1:ceee4:name1:x5:emptyde1:ni7ee")) {
		t.Fatal("appending to Bytes wrote into the input")
	}
}

// TestValueUnchecked feeds input that CheckBencode refuses: every method
// must return an error (or, where the checker's reason is a rule the
// walker does not enforce, read on) and never panic or read outside it.
func TestValueUnchecked(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		wantErr  string // "" when the walker reads it
	}{
		{"empty", "", "want an integer, got nothing"},
		{"garbage", "x", "want an integer, got nothing"},
		{"truncated int", "i12", "unexpected end of input inside the integer"},
		{"truncated string", "5:ab", "exceeds the 2 bytes left"},
		{"hostile length", "999999999999:", "exceeds"},
		{"unclosed list", "li1e", "unexpected end of input inside the list opened at offset 0"},
		{"unclosed dict", "d1:a", "unexpected end of input, want a value"},
		{"key without value", "d1:ae", "unexpected byte 'e', want a value"},
		{"int key", "di1ei2ee", "dictionary key is not a string"},
		{"trailing after int", "i1eXX", "2 trailing bytes after the value"},
		{"trailing after string", "1:aX", "1 trailing bytes after the value"},
		{"trailing after list", "leXX", "2 trailing bytes after the value"},
		{"trailing after dict", "d1:ai1eee", "1 trailing bytes after the value"},
		{"leading zero", "i01e", "leading zero"},
		{"overflow", "i9223372036854775808e", "does not fit 64 bits"},
		{"deep, unclosed", strings.Repeat("l", 1e5), "unexpected end of input"},
		{"duplicate key (not the walker's concern)", "d1:ai1e1:ai2ee", ""},
		{"deep (not the walker's concern)", strings.Repeat("l", 2000) + strings.Repeat("e", 2000), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := ValueOf([]byte(tc.in))
			names := 0
			_, err := walk(t, v, "", &names)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("walk: %v", err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("walk: %v, want %q", err, tc.wantErr)
			}
			// The rest must merely not panic.
			v.Raw()
			v.Name()
			v.Lookup("a")
			var f [2]Value
			v.Fields(f[:], "a", "b")
			v.Elems(func(_ int, e Value) error { e.Name(); return nil })
		})
	}
}

// TestValueAllocations: walking and reading in place allocates nothing,
// even where a reader refuses a value of the wrong kind.
func TestValueAllocations(t *testing.T) {
	data := []byte("l" + strings.Repeat("de", 1000) + strings.Repeat("d2:ip9:127.0.0.14:porti1ee", 1000) + "i5e3:abce")
	v := ValueOf(data)
	var f [2]Value
	allocs := testing.AllocsPerRun(5, func() {
		err := v.Elems(func(_ int, e Value) error {
			if err := e.Fields(f[:], "ip", "port"); err != nil {
				return nil // not a dictionary: skipped
			}
			f[0].Bytes() // an error for the empty dictionaries
			f[1].Int()
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per walk of 2000 dictionaries, want 0", allocs)
	}
}
