package wire

import (
	"net/netip"
	"slices"
	"testing"

	"btfs/metainfo"
)

func TestAllowedFastSet(t *testing.T) {
	var aa metainfo.Hash
	for i := range aa {
		aa[i] = 0xaa
	}
	bep6 := []int{1059, 431, 808, 1217, 287, 376, 1188}
	tests := []struct {
		name      string
		ip        string
		numPieces int
		k         int
		want      []int
	}{
		// BEP 6's published vectors.
		{"bep6 k=7", "80.4.4.200", 1313, 7, bep6},
		{"bep6 k=9", "80.4.4.200", 1313, 9, append(slices.Clone(bep6), 353, 508)},
		// The /24 decides, not the host.
		{"same /24", "80.4.4.1", 1313, 7, bep6},
		{"ipv4-mapped", "::ffff:80.4.4.200", 1313, 7, bep6},
		{"k over numPieces", "80.4.4.200", 3, 10, nil}, // checked below: a permutation of 0..2
		{"no pieces", "80.4.4.200", 0, 10, nil},
		{"k zero", "80.4.4.200", 1313, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := AllowedFastSet(netip.MustParseAddr(tc.ip), aa, tc.numPieces, tc.k)
			if tc.name == "k over numPieces" {
				s := slices.Sorted(slices.Values(got))
				if !slices.Equal(s, []int{0, 1, 2}) {
					t.Fatalf("got %v, want all 3 pieces once", got)
				}
				return
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("invalid address", func(t *testing.T) {
		if got := AllowedFastSet(netip.Addr{}, aa, 100, 10); got != nil {
			t.Fatalf("got %v", got)
		}
	})
	t.Run("ipv6 /48", func(t *testing.T) {
		a := AllowedFastSet(netip.MustParseAddr("2001:db8:1:2::1"), aa, 1313, 10)
		b := AllowedFastSet(netip.MustParseAddr("2001:db8:1:ffff::9"), aa, 1313, 10)
		c := AllowedFastSet(netip.MustParseAddr("2001:db8:2::1"), aa, 1313, 10)
		if len(a) != 10 || !slices.Equal(a, b) {
			t.Fatalf("same /48: %v and %v", a, b)
		}
		if slices.Equal(a, c) {
			t.Fatalf("different /48 gave the same set %v", a)
		}
	})
	t.Run("distinct and in range", func(t *testing.T) {
		for n := 1; n < 40; n++ {
			got := AllowedFastSet(netip.MustParseAddr("10.0.0.1"), aa, n, AllowedFastK)
			if len(got) != min(n, AllowedFastK) {
				t.Fatalf("%d pieces: %d indices", n, len(got))
			}
			s := slices.Sorted(slices.Values(got))
			if len(slices.Compact(s)) != len(got) || s[0] < 0 || s[len(s)-1] >= n {
				t.Fatalf("%d pieces: %v", n, got)
			}
		}
	})
}
