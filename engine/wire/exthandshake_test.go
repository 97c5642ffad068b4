package wire

import (
	"errors"
	"maps"
	"net/netip"
	"strings"
	"testing"
)

// equalExt compares handshakes treating a nil and an empty M alike.
func equalExt(a, b ExtHandshake) bool {
	return maps.Equal(a.M, b.M) && a.V == b.V && a.Port == b.Port && a.YourIP == b.YourIP &&
		a.IPv4 == b.IPv4 && a.IPv6 == b.IPv6 && a.Reqq == b.Reqq &&
		a.MetadataSize == b.MetadataSize && a.UploadOnly == b.UploadOnly
}

func TestExtHandshakeEncode(t *testing.T) {
	tests := []struct {
		name string
		h    ExtHandshake
		want string
	}{
		{"empty", ExtHandshake{}, "d1:mdee"},
		{"ours", ExtHandshake{
			M:            map[string]int{ExtMetadata: 1, ExtPex: 2},
			V:            "btfs 0.1",
			Port:         6881,
			YourIP:       netip.MustParseAddr("127.0.0.1"),
			Reqq:         250,
			MetadataSize: 31235,
		}, "d1:md11:ut_metadatai1e6:ut_pexi2ee13:metadata_sizei31235e1:pi6881e4:reqqi250e1:v8:btfs 0.16:yourip4:\x7f\x00\x00\x01e"},
		{"addresses", ExtHandshake{
			YourIP:     netip.MustParseAddr("::1"),
			IPv4:       netip.MustParseAddr("127.0.0.2"),
			IPv6:       netip.MustParseAddr("::2"),
			UploadOnly: true,
		}, "d4:ipv44:\x7f\x00\x00\x024:ipv616:" + string(make([]byte, 15)) + "\x021:mde11:upload_onlyi1e6:yourip16:" + string(make([]byte, 15)) + "\x01e"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.h.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("encoded\n%q\nwant\n%q", got, tc.want)
			}
			back, err := ParseExtHandshake(got, 0)
			if err != nil {
				t.Fatalf("parsing our own encoding: %v", err)
			}
			if !equalExt(back, tc.h) {
				t.Fatalf("round trip %+v, want %+v", back, tc.h)
			}
		})
	}
}

func TestExtHandshakeEncodeRefuses(t *testing.T) {
	tests := []struct {
		name string
		h    ExtHandshake
	}{
		{"id 256", ExtHandshake{M: map[string]int{"x": 256}}},
		{"id -1", ExtHandshake{M: map[string]int{"x": -1}}},
		{"port 65536", ExtHandshake{Port: 65536}},
		{"ipv6 in ipv4", ExtHandshake{IPv4: netip.MustParseAddr("::1")}},
		{"ipv4 in ipv6", ExtHandshake{IPv6: netip.MustParseAddr("1.2.3.4")}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := tc.h.Encode(); !errors.Is(err, ErrBadExtHandshake) {
				t.Fatalf("err %v, want ErrBadExtHandshake", err)
			}
		})
	}
}

func TestParseExtHandshake(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		max     int64
		want    ExtHandshake
		wantErr error
	}{
		{"libtorrent-like",
			"d1:ei0e4:ipv616:\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x011:md11:lt_donthavei7e10:share_modei8e11:upload_onlyi3e12:ut_holepunchi4e11:ut_metadatai2e6:ut_pexi1ee13:metadata_sizei31235e1:pi6881e4:reqqi500e11:upload_onlyi0e1:v17:qBittorrent/4.5.26:yourip4:\x7f\x00\x00\x01e",
			0,
			ExtHandshake{
				M:            map[string]int{"lt_donthave": 7, "share_mode": 8, "upload_only": 3, "ut_holepunch": 4, ExtMetadata: 2, ExtPex: 1},
				V:            "qBittorrent/4.5.2",
				Port:         6881,
				YourIP:       netip.MustParseAddr("127.0.0.1"),
				IPv6:         netip.MustParseAddr("2001:db8::1"),
				Reqq:         500,
				MetadataSize: 31235,
			}, nil},
		{"disable pex", "d1:md6:ut_pexi0eee", 0, ExtHandshake{M: map[string]int{ExtPex: 0}}, nil},
		{"no m", "d1:v3:abce", 0, ExtHandshake{V: "abc"}, nil},
		{"unknown keys of any shape", "d1:xl1:ad1:bi1eee1:yi-5e1:md11:ut_metadatai3eee", 0, ExtHandshake{M: map[string]int{ExtMetadata: 3}}, nil},
		{"m value not an int is dropped", "d1:md1:a3:xyz11:ut_metadatai1eee", 0, ExtHandshake{M: map[string]int{ExtMetadata: 1}}, nil},
		{"known keys of the wrong type", "d1:p3:abc4:reqq1:x1:vi5e6:yourip1:x13:metadata_size2:xxe", 0, ExtHandshake{}, nil},
		{"port out of range", "d1:pi70000ee", 0, ExtHandshake{}, nil},
		{"port zero", "d1:pi0ee", 0, ExtHandshake{}, nil},
		{"negative reqq", "d4:reqqi-5ee", 0, ExtHandshake{}, nil},
		{"huge reqq", "d4:reqqi9223372036854775807ee", 0, ExtHandshake{}, nil},
		{"yourip of 5 bytes", "d6:yourip5:abcdee", 0, ExtHandshake{}, nil},
		{"ipv4 of 16 bytes", "d4:ipv416:0123456789abcdefe", 0, ExtHandshake{}, nil},
		{"metadata at cap", "d13:metadata_sizei1000ee", 1000, ExtHandshake{MetadataSize: 1000}, nil},
		{"metadata over cap", "d1:md11:ut_metadatai2ee13:metadata_sizei1001ee", 1000, ExtHandshake{M: map[string]int{ExtMetadata: 2}}, ErrMetadataTooLarge},
		{"metadata 2^62", "d13:metadata_sizei4611686018427387904ee", 0, ExtHandshake{}, ErrMetadataTooLarge},
		{"metadata negative", "d13:metadata_sizei-1ee", 0, ExtHandshake{}, ErrBadExtHandshake},
		{"m id 256", "d1:md1:ai256eee", 0, ExtHandshake{}, ErrBadExtHandshake},
		{"m id -1", "d1:md1:ai-1eee", 0, ExtHandshake{}, ErrBadExtHandshake},
		{"m id 2^63-1", "d1:md1:ai9223372036854775807eee", 0, ExtHandshake{}, ErrBadExtHandshake},
		{"m not a dict", "d1:mli1eee", 0, ExtHandshake{}, ErrBadExtHandshake},
		{"not a dict", "li1ee", 0, ExtHandshake{}, ErrBadExtHandshake},
		{"empty", "", 0, ExtHandshake{}, ErrBadExtHandshake},
		{"trailing bytes", "d1:mdeeXX", 0, ExtHandshake{}, ErrBadExtHandshake},
		{"duplicate key", "d1:mde1:mdee", 0, ExtHandshake{}, ErrBadExtHandshake},
		{"declared string of 10^12 bytes", "d1:v999999999999:e", 0, ExtHandshake{}, ErrBadExtHandshake},
		{"integer overflow", "d1:pi99999999999999999999ee", 0, ExtHandshake{}, ErrBadExtHandshake},
		{"nesting 10000 deep", "d1:x" + strings.Repeat("l", 10000) + strings.Repeat("e", 10000) + "e", 0, ExtHandshake{}, ErrBadExtHandshake},
		{"over 64 KiB", "d1:v65536:" + strings.Repeat("v", 65536) + "e", 0, ExtHandshake{}, ErrMessageTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseExtHandshake([]byte(tc.payload), tc.max)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if (tc.wantErr == nil || tc.wantErr == ErrMetadataTooLarge) && !equalExt(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParseExtHandshakeHostileAllocations(t *testing.T) {
	payload := []byte("d1:v4294967295:e")
	per := bytesAllocated(20, func() {
		if _, err := ParseExtHandshake(payload, 0); !errors.Is(err, ErrBadExtHandshake) {
			t.Fatalf("err %v", err)
		}
	})
	if per > 4<<10 {
		t.Fatalf("%d bytes allocated for a 4 GiB string claim", per)
	}
}
