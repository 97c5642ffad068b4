package tracker

import (
	"fmt"
	"strings"
	"testing"
)

// TestHTTPReplyBuildsNoTree feeds replies of a million small values that a
// generic decoder would turn into a million Go values: the reply parser
// reads them in place, so their number costs no allocation.
func TestHTTPReplyBuildsNoTree(t *testing.T) {
	const n = 1_000_000
	for _, tc := range []struct {
		name string
		body string
	}{
		{"peers of empty dictionaries", "d8:intervali60e5:peersl" + strings.Repeat("de", n) + "ee"},
		{"peers of empty lists", "d8:intervali60e5:peersl" + strings.Repeat("le", n) + "ee"},
		{"unknown key of empty dictionaries", "d1:xl" + strings.Repeat("de", n) + "e8:intervali60ee"},
		{"peer dictionaries of unknown keys", "d8:intervali60e5:peersl" + strings.Repeat("d1:xdee", n/4) + "ee"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(tc.body)
			allocs := testing.AllocsPerRun(2, func() {
				r, err := parseHTTPResponse("http://127.0.0.1/announce", body)
				if err != nil || len(r.Peers) != 0 {
					t.Fatalf("reply %+v, %v; want no peers and no error", r, err)
				}
			})
			if allocs > 20 {
				t.Fatalf("%v allocations for %d bytes; want a handful, not one per value", allocs, len(body))
			}
			t.Logf("%v allocations for %d bytes", allocs, len(body))
		})
	}
}

// BenchmarkParseHTTPResponse measures a typical compact reply, a BEP 3
// reply of dictionary peers, and the hostile shape of
// TestHTTPReplyBuildsNoTree.
func BenchmarkParseHTTPResponse(b *testing.B) {
	var peers strings.Builder
	for i := range 50 {
		fmt.Fprintf(&peers, "d2:ip9:127.0.0.%d7:peer id20:aaaaaaaaaaaaaaaaaaaa4:porti%dee", i%10, 6881+i)
	}
	for _, bc := range []struct {
		name string
		body string
	}{
		{"compact 50", "d8:completei5e10:incompletei7e8:intervali1800e12:min intervali900e5:peers300:" + strings.Repeat("\x7f\x00\x00\x02\x1a\xe1", 50) + "e"},
		{"dictionaries 50", "d8:intervali60e5:peersl" + peers.String() + "ee"},
		{"empty dictionaries 1e5", "d8:intervali60e5:peersl" + strings.Repeat("de", 1e5) + "ee"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			body := []byte(bc.body)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parseHTTPResponse("http://127.0.0.1/announce", body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
