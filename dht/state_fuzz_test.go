package dht

import (
	"net/netip"
	"reflect"
	"testing"
)

// FuzzDecodeState: any bytes decode without a panic, and what decodes
// cleanly encodes back to bytes that decode to the same state.
func FuzzDecodeState(f *testing.F) {
	good := encodeState(&state{id: [20]byte{1}, nodes: []savedNode{
		{id: [20]byte{2}, addr: netip.MustParseAddrPort("127.0.0.1:6881")},
		{id: [20]byte{3}, addr: netip.MustParseAddrPort("[::1]:6882")},
	}})
	f.Add(good)
	f.Add(good[:len(good)-3])
	f.Add([]byte(stateMagic))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeState(b)
		if err != nil || st == nil {
			return
		}
		again, err := decodeState(encodeState(st))
		if err != nil {
			t.Fatalf("re-decoding an encoded state: %v", err)
		}
		if again.id != st.id || len(again.nodes) != len(st.nodes) || (len(st.nodes) > 0 && !reflect.DeepEqual(again.nodes, st.nodes)) {
			t.Fatalf("round trip changed the state: %+v → %+v", st, again)
		}
	})
}
