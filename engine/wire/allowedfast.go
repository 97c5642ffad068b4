package wire

import (
	"crypto/sha1"
	"encoding/binary"
	"net/netip"
	"slices"

	"btfs/metainfo"
)

// AllowedFastK is the allowed-fast set size BEP 6 suggests.
const AllowedFastK = 10

// maxAllowedFastHashes bounds the SHA-1 chain of AllowedFastSet. With k
// capped at numPieces the chain ends with probability 1, but when k is
// close to numPieces it is a coupon collector's walk; the bound keeps a
// tiny torrent from costing more than a few milliseconds.
const maxAllowedFastHashes = 10000

// AllowedFastSet computes the pieces a peer at ip may request from us while
// choked, with BEP 6's canonical algorithm: x = the address masked to its
// /24, followed by the info-hash; then repeatedly x = SHA-1(x), each of its
// five big-endian 32-bit words modulo numPieces giving an index, new
// indices collected in order until there are k.
//
// BEP 6 defines only IPv4. An IPv4-mapped IPv6 address counts as IPv4. For
// IPv6 we use the 16 bytes masked to the /48, the usual size of one site's
// allocation, in the same spirit as the /24 (one party cannot get several
// sets by hopping addresses); the peer never recomputes our set, so no
// interoperability depends on it.
//
// k is capped at numPieces. It returns nil when numPieces or k is not
// positive or ip is invalid, and may return fewer than k indices if the
// chain runs past maxAllowedFastHashes (only conceivable for k near
// numPieces).
func AllowedFastSet(ip netip.Addr, infoHash metainfo.Hash, numPieces, k int) []int {
	if numPieces <= 0 || k <= 0 || !ip.IsValid() {
		return nil
	}
	k = min(k, numPieces)
	var x []byte
	ip = ip.Unmap()
	if ip.Is4() {
		a := ip.As4()
		a[3] = 0
		x = append(x, a[:]...)
	} else {
		a := ip.As16()
		clear(a[6:])
		x = append(x, a[:]...)
	}
	x = append(x, infoHash[:]...)

	set := make([]int, 0, k)
	for range maxAllowedFastHashes {
		h := sha1.Sum(x)
		x = h[:]
		for i := 0; i < 5 && len(set) < k; i++ {
			idx := int(uint64(binary.BigEndian.Uint32(h[4*i:])) % uint64(numPieces))
			if !slices.Contains(set, idx) {
				set = append(set, idx)
			}
		}
		if len(set) == k {
			break
		}
	}
	return set
}
