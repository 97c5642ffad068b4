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
// Each step loads the next step's s[i] before its own swap is stored, so
// that load does not wait behind the stores (one step's chain is load,
// add, load, store); the swap changed that entry only when j is the next
// i, which the step checks. That is a fourth faster than the plain loop
// (BenchmarkReceivePieces, one core).
//
//go:norace
func (c *rc4) XORKeyStream(dst, src []byte) {
	if len(src) == 0 {
		return
	}
	s := &c.s
	dst = dst[:len(src)]
	i, j := c.i+1, c.j // i is the index of this step
	x := s[i]
	for k, v := range src {
		j += uint8(x)
		y := s[j]
		next := i + 1
		nx := s[next]
		s[i], s[j] = y, x
		if j == next {
			nx = x
		}
		dst[k] = v ^ uint8(s[uint8(x+y)])
		i, x = next, nx
	}
	c.i, c.j = i-1, j
}
