package wire

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// compact returns the compact form of addresses ("1.2.3.4:5" or "[::1]:5").
func compact(t testing.TB, addrs ...string) string {
	t.Helper()
	var b []byte
	for _, s := range addrs {
		ap := netip.MustParseAddrPort(s)
		b = append(b, ap.Addr().AsSlice()...)
		b = binary.BigEndian.AppendUint16(b, ap.Port())
	}
	return string(b)
}

// bstr bencodes s.
func bstr(s string) string { return strconv.Itoa(len(s)) + ":" + s }

func pexPeer(s string, f PexFlags) PexPeer {
	return PexPeer{Addr: netip.MustParseAddrPort(s), Flags: f}
}

func equalPex(a, b PexMsg) bool {
	return slices.Equal(a.Added, b.Added) && slices.Equal(a.Dropped, b.Dropped)
}

func TestEncodePex(t *testing.T) {
	tests := []struct {
		name string
		m    PexMsg
		want string
	}{
		{"empty", PexMsg{}, "d5:added0:7:added.f0:6:added60:8:added6.f0:7:dropped0:8:dropped60:e"},
		{"mixed", PexMsg{
			Added: []PexPeer{
				pexPeer("127.0.0.1:6881", PexSeed|PexReachable),
				pexPeer("[::1]:6882", 0),
				pexPeer("127.0.0.2:80", PexUTP),
			},
			Dropped: []netip.AddrPort{netip.MustParseAddrPort("[2001:db8::1]:1"), netip.MustParseAddrPort("10.0.0.1:65535")},
		}, "d" +
			"5:added" + bstr(compact(t, "127.0.0.1:6881", "127.0.0.2:80")) +
			"7:added.f" + bstr("\x12\x04") +
			"6:added6" + bstr(compact(t, "[::1]:6882")) +
			"8:added6.f" + bstr("\x00") +
			"7:dropped" + bstr(compact(t, "10.0.0.1:65535")) +
			"8:dropped6" + bstr(compact(t, "[2001:db8::1]:1")) +
			"e"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := EncodePex(tc.m)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("encoded\n%q\nwant\n%q", got, tc.want)
			}
			back, err := ParsePex(got)
			if err != nil {
				t.Fatalf("parsing our own encoding: %v", err)
			}
			// Parsing groups the families: IPv4 first.
			want := tc.m
			want.Added = slices.Clone(want.Added)
			slices.SortStableFunc(want.Added, func(a, b PexPeer) int { return boolInt(!a.Addr.Addr().Is4()) - boolInt(!b.Addr.Addr().Is4()) })
			want.Dropped = slices.Clone(want.Dropped)
			slices.SortStableFunc(want.Dropped, func(a, b netip.AddrPort) int { return boolInt(!a.Addr().Is4()) - boolInt(!b.Addr().Is4()) })
			if !equalPex(back, want) {
				t.Fatalf("round trip %+v, want %+v", back, want)
			}
		})
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestEncodePexRefuses(t *testing.T) {
	many := make([]PexPeer, MaxPexPeers+1)
	for i := range many {
		many[i] = PexPeer{Addr: netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 1)}
	}
	manyDropped := make([]netip.AddrPort, MaxPexPeers+1)
	for i := range manyDropped {
		manyDropped[i] = many[i].Addr
	}
	tests := []struct {
		name string
		m    PexMsg
	}{
		{"201 added", PexMsg{Added: many}},
		{"201 dropped", PexMsg{Dropped: manyDropped}},
		{"invalid added", PexMsg{Added: []PexPeer{{}}}},
		{"invalid dropped", PexMsg{Dropped: []netip.AddrPort{{}}}},
		{"zone", PexMsg{Added: []PexPeer{pexPeer("[fe80::1%eth0]:1", 0)}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := EncodePex(tc.m); !errors.Is(err, ErrBadPex) {
				t.Fatalf("err %v, want ErrBadPex", err)
			}
		})
	}
	// 200 IPv4 and 200 IPv6 added peers are two lists, each at the cap.
	both := slices.Clone(many[:MaxPexPeers])
	for i := range MaxPexPeers {
		both = append(both, PexPeer{Addr: netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 15: byte(i)}), 1)})
	}
	if _, err := EncodePex(PexMsg{Added: both}); err != nil {
		t.Fatalf("200 + 200 added: %v", err)
	}
}

func TestParsePex(t *testing.T) {
	v4 := compact(t, "127.0.0.1:6881", "127.0.0.2:6882")
	many := strings.Repeat(compact(t, "10.1.2.3:4"), 300)
	tests := []struct {
		name    string
		payload string
		want    PexMsg
		wantErr error
	}{
		{"empty dict", "de", PexMsg{}, nil},
		{"added with flags", "d5:added" + bstr(v4) + "7:added.f" + bstr("\x02\x10") + "e",
			PexMsg{Added: []PexPeer{pexPeer("127.0.0.1:6881", PexSeed), pexPeer("127.0.0.2:6882", PexReachable)}}, nil},
		{"flags of the wrong length are dropped", "d5:added" + bstr(v4) + "7:added.f" + bstr("\x02") + "e",
			PexMsg{Added: []PexPeer{pexPeer("127.0.0.1:6881", 0), pexPeer("127.0.0.2:6882", 0)}}, nil},
		{"no flags", "d5:added" + bstr(v4) + "e",
			PexMsg{Added: []PexPeer{pexPeer("127.0.0.1:6881", 0), pexPeer("127.0.0.2:6882", 0)}}, nil},
		{"ipv6 and dropped", "d6:added6" + bstr(compact(t, "[::1]:1")) + "8:added6.f" + bstr("\x01") +
			"7:dropped" + bstr(compact(t, "1.2.3.4:5")) + "8:dropped6" + bstr(compact(t, "[::2]:3")) + "e",
			PexMsg{Added: []PexPeer{pexPeer("[::1]:1", PexEncryption)},
				Dropped: []netip.AddrPort{netip.MustParseAddrPort("1.2.3.4:5"), netip.MustParseAddrPort("[::2]:3")}}, nil},
		{"mapped stays mapped", "d6:added6" + bstr(compact(t, "[::ffff:1.2.3.4]:1")) + "e",
			PexMsg{Added: []PexPeer{pexPeer("[::ffff:1.2.3.4]:1", 0)}}, nil},
		{"unknown keys", "d1:ali1ee5:added" + bstr(compact(t, "1.1.1.1:1")) + "1:zd1:xi1eee",
			PexMsg{Added: []PexPeer{pexPeer("1.1.1.1:1", 0)}}, nil},
		{"300 added keeps 200", "d5:added" + bstr(many) + "e", PexMsg{Added: slices.Repeat([]PexPeer{pexPeer("10.1.2.3:4", 0)}, MaxPexPeers)}, nil},
		{"300 dropped keeps 200", "d7:dropped" + bstr(many) + "e", PexMsg{Dropped: slices.Repeat([]netip.AddrPort{netip.MustParseAddrPort("10.1.2.3:4")}, MaxPexPeers)}, nil},

		{"added of 7 bytes", "d5:added7:abcdefge", PexMsg{}, ErrBadPex},
		{"added6 of 6 bytes", "d6:added6" + bstr(v4[:6]) + "e", PexMsg{}, ErrBadPex},
		{"dropped of 5 bytes", "d7:dropped5:abcdee", PexMsg{}, ErrBadPex},
		{"added an integer", "d5:addedi1ee", PexMsg{}, ErrBadPex},
		{"added.f a list", "d5:added0:7:added.flee", PexMsg{}, ErrBadPex},
		{"not a dict", "le", PexMsg{}, ErrBadPex},
		{"empty", "", PexMsg{}, ErrBadPex},
		{"trailing bytes", "dexx", PexMsg{}, ErrBadPex},
		{"duplicate key", "d5:added0:5:added0:e", PexMsg{}, ErrBadPex},
		{"declared string of 10^12 bytes", "d5:added999999999999:e", PexMsg{}, ErrBadPex},
		{"nesting 10000 deep", "d1:x" + strings.Repeat("l", 10000) + strings.Repeat("e", 10000) + "e", PexMsg{}, ErrBadPex},
		{"over 64 KiB", "d1:x65536:" + strings.Repeat("x", 65536) + "e", PexMsg{}, ErrMessageTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePex([]byte(tc.payload))
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if !equalPex(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParsePexHostileAllocations(t *testing.T) {
	payload := []byte("d5:added4294967295:e")
	per := bytesAllocated(20, func() {
		if _, err := ParsePex(payload); !errors.Is(err, ErrBadPex) {
			t.Fatalf("err %v", err)
		}
	})
	if per > 4<<10 {
		t.Fatalf("%d bytes allocated for a 4 GiB string claim", per)
	}
}
