package metainfo

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

var testLimits = Limits{MaxSize: 1 << 20, MaxDepth: 8}

func TestCheckBencodeAccepts(t *testing.T) {
	for _, in := range []string{
		"i0e",
		"i-1e",
		"i42e",
		"i9223372036854775807e",
		"i-9223372036854775808e",
		"0:",
		"3:abc",
		"le",
		"de",
		"li1e3:abce",
		"d1:ai1e1:bli2eee",
		"d1:bi1e1:ai2ee",         // keys out of order: accepted
		"d1:ci1e1:ai2e1:bi3ee",   // out of order, no duplicate
		"d0:i1e1:ai2ee",          // empty key
		"llllllllee" + "eeeeee",  // depth 8 = the limit
		"d1:ad1:ad1:ad1:aleeeee", // dicts nested
		"5:\x00\xff:de",          // strings are bytes
		"d4:infod4:name1:xee",    // a small torrent-shaped value
		"l" + strings.Repeat("i1e", 100) + "e",
	} {
		if err := CheckBencode([]byte(in), testLimits); err != nil {
			t.Errorf("CheckBencode(%q) = %v, want nil", in, err)
		}
	}
}

func TestCheckBencodeRejects(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		offset   int
		msg      string
		limit    bool
	}{
		{"empty", "", 0, "unexpected end of input", false},
		{"trailing", "i1ei2e", 3, "3 trailing bytes", false},
		{"leading zero", "i01e", 0, "leading zero", false},
		{"negative zero", "i-0e", 0, "negative zero", false},
		{"no digits", "ie", 0, "no digits", false},
		{"minus only", "i-e", 0, "no digits", false},
		{"plus sign", "i+1e", 1, `unexpected byte '+'`, false},
		{"int overflow", "i9223372036854775808e", 0, "does not fit 64 bits", false},
		{"int underflow", "i-9223372036854775809e", 0, "does not fit 64 bits", false},
		{"huge int", "i" + strings.Repeat("9", 1000) + "e", 0, "does not fit 64 bits", false},
		{"unterminated int", "i12", 3, "inside the integer", false},
		{"string length leading zero", "03:abc", 0, "leading zero", false},
		{"string past end", "5:abc", 0, "exceeds the 3 bytes left", false},
		{"hostile string length", "999999999999:", 0, "exceeds the 0 bytes left", false},
		{"string length no colon", "3abc", 1, "want ':'", false},
		{"negative string length", "-1:a", 0, "unexpected byte '-'", false},
		{"int key", "di1ei2ee", 1, "key is not a string", false},
		{"list key", "dlei2ee", 1, "key is not a string", false},
		{"key without value", "d1:ae", 4, "has no value", false},
		{"adjacent duplicate", "d1:ai1e1:ai2ee", 7, "duplicate dictionary key \"a\"", false},
		{"distant duplicate", "d1:bi1e1:ai2e1:bi3ee", 15, "duplicate dictionary key \"b\"", false},
		{"unterminated list", "li1e", 4, "inside the list opened at offset 0", false},
		{"unterminated dict", "d1:ai1e", 7, "inside the dictionary opened at offset 0", false},
		{"bad byte", "x", 0, "unexpected byte 'x'", false},
		{"stray end", "e", 0, "unexpected byte 'e'", false},
		{"too deep", strings.Repeat("l", 9) + strings.Repeat("e", 9), 8, "nesting deeper than 8", true},
		{"too big", "1048577:" + strings.Repeat("x", 1<<20+1), 0, "exceeds the limit", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckBencode([]byte(tc.in), testLimits)
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("CheckBencode = %v, want a *SyntaxError", err)
			}
			if se.Offset != tc.offset || !strings.Contains(se.Msg, tc.msg) {
				t.Errorf("CheckBencode = %v, want offset %d and %q", err, tc.offset, tc.msg)
			}
			if got := errors.Is(err, ErrLimit); got != tc.limit {
				t.Errorf("errors.Is(%v, ErrLimit) = %v, want %v", err, got, tc.limit)
			}
			if _, perr := CheckBencodePrefix([]byte(tc.in), testLimits); perr == nil && tc.name != "trailing" {
				t.Errorf("CheckBencodePrefix accepted what CheckBencode rejects")
			}
		})
	}
}

func TestCheckBencodeZeroLimits(t *testing.T) {
	if err := CheckBencode([]byte("i1e"), Limits{}); !errors.Is(err, ErrLimit) {
		t.Errorf("zero Limits accepted input: %v", err)
	}
	if err := CheckBencode([]byte("le"), Limits{MaxSize: 10}); !errors.Is(err, ErrLimit) {
		t.Errorf("MaxDepth 0 accepted a list: %v", err)
	}
	if err := CheckBencode([]byte("i1e"), Limits{MaxSize: 10}); err != nil {
		t.Errorf("MaxDepth 0 rejected a scalar: %v", err)
	}
}

func TestCheckBencodePrefix(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      string
		lim     Limits
		n       int
		wantErr bool
	}{
		{"ut_metadata data", "d8:msg_typei1e5:piecei0ee" + "RAW\x00BYTES", testLimits, 25, false},
		{"exact", "le", testLimits, 2, false},
		{"garbage after", "i1eXYZ", testLimits, 3, false},
		{"limit applies to the value only", "i1e" + strings.Repeat("x", 100), Limits{MaxSize: 3, MaxDepth: 1}, 3, false},
		{"value over limit", "4:abcd", Limits{MaxSize: 5, MaxDepth: 1}, 0, true},
		{"truncated", "d8:msg_type", testLimits, 0, true},
		{"empty", "", testLimits, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n, err := CheckBencodePrefix([]byte(tc.in), tc.lim)
			if (err != nil) != tc.wantErr || n != tc.n {
				t.Errorf("CheckBencodePrefix = %d, %v; want %d, error %v", n, err, tc.n, tc.wantErr)
			}
		})
	}
}

func TestDictValueSpan(t *testing.T) {
	data := []byte("d8:announce3:url4:infod4:name1:xe7:comment0:e")
	for _, tc := range []struct {
		name, in, key, want string
		wantErr             string
	}{
		{"info", string(data), "info", "d4:name1:xe", ""},
		{"first", string(data), "announce", "3:url", ""},
		{"last", string(data), "comment", "0:", ""},
		{"absent", string(data), "nope", "", `key "nope" not found`},
		{"nested keys are not top-level", string(data), "name", "", "not found"},
		{"not a dict", "li1ee", "info", "", "not a dictionary"},
		{"empty", "", "info", "", "not a dictionary"},
		{"truncated value", "d4:infod4:name", "info", "", "unexpected end"},
		{"truncated before key", "d1:ai1e", "info", "", "unexpected end"},
		{"hostile length", "d4:info999999999999:", "info", "", "exceeds"},
		{"int key", "di1e4:infoe", "info", "", "key is not a string"},
		{"deep value", "d1:a" + strings.Repeat("l", 1e5) + strings.Repeat("e", 1e5) + "4:infoi7ee", "info", "i7e", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.in)
			start, end, err := DictValueSpan(in, tc.key)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("DictValueSpan = %d, %d, %v; want error %q", start, end, err, tc.wantErr)
				}
				return
			}
			if err != nil || string(in[start:end]) != tc.want {
				t.Fatalf("DictValueSpan = %d, %d, %v; want span %q", start, end, err, tc.want)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	v, err := Decode([]byte("d1:bli1e3:xyze1:ai-5ee"), testLimits)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"a": int64(-5), "b": []any{int64(1), "xyz"}}
	if !reflect.DeepEqual(v, want) {
		t.Errorf("Decode = %#v, want %#v", v, want)
	}
	for _, in := range []string{"999999999999:", "d1:ai1e1:ai2ee", strings.Repeat("l", 1000)} {
		if v, err := Decode([]byte(in), testLimits); err == nil {
			t.Errorf("Decode(%.20q) = %v, want an error", in, v)
		}
	}
}

func TestUnmarshal(t *testing.T) {
	type reply struct {
		Interval int64    `bencode:"interval"`
		Peers    string   `bencode:"peers"`
		Names    []string `bencode:"names"`
	}
	for _, tc := range []struct {
		name    string
		in      string
		want    reply
		wantErr string
	}{
		{"ok", "d8:intervali1800e5:namesl1:a1:be5:peers6:abcdef7:unknowni1ee", reply{1800, "abcdef", []string{"a", "b"}}, ""},
		{"int into string field panics inside the library", "d5:peersi5ee", reply{}, "decoder rejected"},
		{"int into slice field", "d5:namesi5ee", reply{}, "decoder rejected"},
		{"hostile", "d5:peers999999999999:e", reply{}, "exceeds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got reply
			err := Unmarshal([]byte(tc.in), testLimits, &got)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Unmarshal = %v, want error %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Unmarshal = %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	if err := Unmarshal([]byte("i1e"), testLimits, nil); err == nil {
		t.Error("Unmarshal into nil succeeded")
	}
}

// TestHostileBencodeMemory feeds inputs built to exhaust memory or stack
// and checks that each is refused with little allocation.
func TestHostileBencodeMemory(t *testing.T) {
	const bound = 8 << 20
	deep := bytes.Repeat([]byte("l"), 1e6)
	for _, tc := range []struct {
		name string
		in   []byte
		lim  Limits
	}{
		{"declared 10^12-byte string", []byte("d8:announce1000000000000:x"), TorrentLimits},
		{"nesting 10^6 deep", deep, TorrentLimits},
		{"10^6 deep dicts", bytes.Repeat([]byte("d1:a"), 250000), TorrentLimits},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			n := allocated(func() { _, err = Decode(tc.in, tc.lim) })
			if err == nil {
				t.Fatal("Decode accepted hostile input")
			}
			if n > bound {
				t.Errorf("refusing it allocated %d bytes, want < %d", n, bound)
			}
			t.Logf("%v (allocated %d bytes)", err, n)
		})
	}
}
