package mse

// rc4 is RC4 (the algorithm of crypto/rc4, which the tests check it
// against) with one difference that matters: its XORKeyStream is marked
// go:norace. The race detector instruments every byte of the keystream
// loop otherwise, which makes an encrypted connection ~40× slower in the
// -race test suite (≈10 MB/s), where every engine talks MSE by default.
// The loop touches only the cipher's own state (owned by one goroutine,
// the connection's reader or writer) and the buffers handed to it.
type rc4 struct {
	s    [256]uint32 // the permutation; uint32 entries are faster than bytes here
	i, j uint8
}

// newRC4 keys a cipher (key: 1 to 256 bytes).
func newRC4(key []byte) *rc4 {
	c := &rc4{}
	for i := range c.s {
		c.s[i] = uint32(i)
	}
	var j uint8
	for i := range c.s {
		j += uint8(c.s[i]) + key[i%len(key)]
		c.s[i], c.s[j] = c.s[j], c.s[i]
	}
	return c
}

// XORKeyStream sets dst to src xor the keystream; dst and src may be the
// same slice (slower) but not overlap otherwise; len(dst) >= len(src).
//
//go:norace
func (c *rc4) XORKeyStream(dst, src []byte) {
	if len(src) == 0 {
		return
	}
	i, j := c.i, c.j
	s := &c.s
	dst = dst[:len(src)]
	for k, v := range src {
		i++
		x := s[i]
		j += uint8(x)
		y := s[j]
		s[i], s[j] = y, x
		dst[k] = v ^ uint8(s[uint8(x+y)])
	}
	c.i, c.j = i, j
}
