package lsd

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func ihN(n int) [20]byte {
	var ih [20]byte
	ih[0], ih[19] = byte(n), byte(n>>8)
	return ih
}

func TestParse(t *testing.T) {
	ih1, ih2 := ihN(1), ihN(2)
	var many strings.Builder
	many.WriteString("BT-SEARCH * HTTP/1.1\r\nPort: 7\r\n")
	for i := range MaxInfoHashes + 5 {
		fmt.Fprintf(&many, "Infohash: %x\r\n", ihN(i))
	}
	many.WriteString("\r\n\r\n")
	var manyWant [][20]byte
	for i := range MaxInfoHashes {
		manyWant = append(manyWant, ihN(i))
	}
	tests := []struct {
		name string
		msg  string
		want *Announce // nil: an error
	}{
		{"BEP 14 example", "BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\nInfohash: " + fmt.Sprintf("%x", ih1) + "\r\ncookie: abc\r\n\r\n\r\n",
			&Announce{Port: 6881, InfoHashes: [][20]byte{ih1}, Cookie: "abc"}},
		{"LF only, names in any case, upper-case hex, two hashes", "BT-SEARCH * HTTP/1.1\nPORT:1\nINFOHASH: " + strings.ToUpper(fmt.Sprintf("%x", ih1)) + "\ninfohash:" + fmt.Sprintf("%x", ih2) + "\n",
			&Announce{Port: 1, InfoHashes: [][20]byte{ih1, ih2}}},
		{"bad hashes skipped", "BT-SEARCH * HTTP/1.1\r\nPort: 2\r\nInfohash: zz\r\nInfohash: " + strings.Repeat("g", 40) + "\r\nInfohash: " + fmt.Sprintf("%x", ih2) + "\r\n\r\n",
			&Announce{Port: 2, InfoHashes: [][20]byte{ih2}}},
		{"headers after the blank line ignored", "BT-SEARCH * HTTP/1.1\r\nPort: 2\r\nInfohash: " + fmt.Sprintf("%x", ih1) + "\r\n\r\nInfohash: " + fmt.Sprintf("%x", ih2) + "\r\n",
			&Announce{Port: 2, InfoHashes: [][20]byte{ih1}}},
		{"at most MaxInfoHashes", many.String(), &Announce{Port: 7, InfoHashes: manyWant}},
		{"long cookie dropped", "BT-SEARCH * HTTP/1.1\r\nPort: 2\r\nInfohash: " + fmt.Sprintf("%x", ih1) + "\r\ncookie: " + strings.Repeat("c", maxCookie+1) + "\r\n\r\n",
			&Announce{Port: 2, InfoHashes: [][20]byte{ih1}}},
		{"not BT-SEARCH", "M-SEARCH * HTTP/1.1\r\nPort: 2\r\nInfohash: " + fmt.Sprintf("%x", ih1) + "\r\n\r\n", nil},
		{"no port", "BT-SEARCH * HTTP/1.1\r\nInfohash: " + fmt.Sprintf("%x", ih1) + "\r\n\r\n", nil},
		{"port 0", "BT-SEARCH * HTTP/1.1\r\nPort: 0\r\nInfohash: " + fmt.Sprintf("%x", ih1) + "\r\n\r\n", nil},
		{"port too big", "BT-SEARCH * HTTP/1.1\r\nPort: 65536\r\nInfohash: " + fmt.Sprintf("%x", ih1) + "\r\n\r\n", nil},
		{"no hash", "BT-SEARCH * HTTP/1.1\r\nPort: 2\r\n\r\n", nil},
		{"empty", "", nil},
		{"too large", "BT-SEARCH * HTTP/1.1\r\nPort: 2\r\nInfohash: " + fmt.Sprintf("%x", ih1) + "\r\nX: " + strings.Repeat("x", MaxMessage) + "\r\n\r\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.msg))
			if tt.want == nil {
				if err == nil {
					t.Fatalf("Parse = %+v, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Port != tt.want.Port || got.Cookie != tt.want.Cookie || !slices.Equal(got.InfoHashes, tt.want.InfoHashes) {
				t.Fatalf("Parse = %+v, want %+v", got, *tt.want)
			}
		})
	}
}

// TestFormat: messages are split at MaxInfoHashes, stay under MaxMessage,
// and parse back to what was formatted.
func TestFormat(t *testing.T) {
	for _, n := range []int{1, MaxInfoHashes, MaxInfoHashes + 1, 3*MaxInfoHashes + 7} {
		var ihs [][20]byte
		for i := range n {
			ihs = append(ihs, ihN(i))
		}
		msgs := Format(GroupV6.String(), 65535, "0123456789abcdef", ihs)
		if want := (n + MaxInfoHashes - 1) / MaxInfoHashes; len(msgs) != want {
			t.Fatalf("%d hashes: %d messages, want %d", n, len(msgs), want)
		}
		var got [][20]byte
		for _, m := range msgs {
			if len(m) > MaxMessage {
				t.Fatalf("%d hashes: a message of %d bytes", n, len(m))
			}
			if !bytes.HasPrefix(m, []byte("BT-SEARCH * HTTP/1.1\r\nHost: [ff15::efc0:988f]:6771\r\nPort: 65535\r\n")) {
				t.Fatalf("message starts %q", m[:60])
			}
			a, err := Parse(m)
			if err != nil {
				t.Fatal(err)
			}
			if a.Port != 65535 || a.Cookie != "0123456789abcdef" {
				t.Fatalf("parsed %+v", a)
			}
			got = append(got, a.InfoHashes...)
		}
		if !slices.Equal(got, ihs) {
			t.Fatalf("%d hashes: parsed back %d, not the same", n, len(got))
		}
	}
}

// FuzzParse: Parse never panics, never returns more than MaxInfoHashes or
// a zero port, and what it returns formats and parses back the same.
func FuzzParse(f *testing.F) {
	f.Add([]byte("BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\nInfohash: 0123456789abcdef0123456789abcdef01234567\r\ncookie: x\r\n\r\n\r\n"))
	f.Add([]byte("BT-SEARCH * HTTP/1.1\nport:1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := Parse(b)
		if err != nil {
			return
		}
		if a.Port == 0 || len(a.InfoHashes) == 0 || len(a.InfoHashes) > MaxInfoHashes || len(a.Cookie) > maxCookie {
			t.Fatalf("Parse accepted %+v", a)
		}
		cookie := a.Cookie
		if strings.ContainsAny(cookie, "\r\n") || strings.TrimSpace(cookie) != cookie {
			return // cannot be formatted back as is
		}
		msgs := Format(GroupV4.String(), a.Port, cookie, a.InfoHashes)
		if len(msgs) != 1 {
			t.Fatalf("%d messages", len(msgs))
		}
		b2, err := Parse(msgs[0])
		if err != nil || b2.Port != a.Port || b2.Cookie != a.Cookie || !slices.Equal(b2.InfoHashes, a.InfoHashes) {
			t.Fatalf("round trip: %+v, %v; want %+v", b2, err, a)
		}
	})
}
