// Package mse is Message Stream Encryption, also called Protocol
// Encryption (MSE/PE): the obfuscation layer that libtorrent, Transmission,
// aria2 and Vuze put below the BitTorrent handshake, so that a network that
// throttles or blocks BitTorrent by its first bytes sees only random-looking
// ones. The specification is https://wiki.vuze.com/w/Message_Stream_Encryption.
//
// The exchange, A dialling B (SKEY is the info-hash, S the Diffie-Hellman
// secret):
//
//	1 A→B  Ya, PadA
//	2 B→A  Yb, PadB
//	3 A→B  HASH('req1', S), HASH('req2', SKEY) xor HASH('req3', S),
//	       ENCRYPT(VC, crypto_provide, len(PadC), PadC, len(IA)), ENCRYPT(IA)
//	4 B→A  ENCRYPT(VC, crypto_select, len(PadD), PadD), ENCRYPT2(payload)
//	5 A→B  ENCRYPT2(payload)
//
// ENCRYPT is RC4 keyed with HASH('keyA'|'keyB', S, SKEY) whose first 1024
// bytes are thrown away; ENCRYPT2 is the same stream when RC4 was selected
// and nothing when plaintext was. IA, the initial payload, carries the
// BitTorrent handshake, so encryption costs no extra round trip.
//
// What the peer sends is untrusted: every length is checked before it is
// used (pads at most MaxPad bytes, the synchronisation markers searched
// within the pad limit only), nothing is allocated from a length the peer
// chose (pads are read through a fixed buffer, IA is decrypted in place as
// the caller reads it), and the handshake runs under the caller's context
// (its deadline is the connection's).
package mse

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"math/big"
	"net"

	"btfs/internal/netctx"
)

// Method is a crypto_provide/crypto_select bit set.
type Method uint32

// The methods of the specification. Other bits are reserved; a peer may
// set them in crypto_provide (they are ignored) but never select them.
const (
	// Plaintext: only the handshake is obfuscated, the payload then flows
	// in the clear.
	Plaintext Method = 1
	// RC4: the whole stream is RC4-encrypted.
	RC4 Method = 2
	// Both is what a peer that has no preference provides.
	Both = Plaintext | RC4
)

// String names the selected method for logs.
func (m Method) String() string {
	switch m {
	case Plaintext:
		return "plaintext"
	case RC4:
		return "rc4"
	case Both:
		return "rc4|plaintext"
	}
	return fmt.Sprintf("mse.Method(%#x)", uint32(m))
}

// Sizes of the specification.
const (
	// MaxPad is the longest PadA, PadB, PadC or PadD.
	MaxPad = 512
	// KeyLen is the length of a public key and of S: the 768-bit prime's.
	KeyLen = 96
	// MaxIA is the longest initial payload (its length is 16 bits).
	MaxIA = 1<<16 - 1
	// privBits is the size of our private exponent (the specification asks
	// for at least 128 random bits; libtorrent and Transmission use 160).
	privBits = 160
	// vcLen is the verification constant's length: eight zero bytes.
	vcLen = 8
	// discardLen is the RC4 keystream thrown away before use.
	discardLen = 1024
	// chunk is the size of a Conn's read and write buffers.
	chunk = 32 << 10
)

// Errors of the handshake. Each ends the connection.
var (
	// ErrBadKey: the peer's public key is 0, 1, p-1 or not below p.
	ErrBadKey = errors.New("mse: invalid public key")
	// ErrNoSync: the marker that ends the peer's padding did not come
	// within MaxPad bytes (garbage, or not MSE at all).
	ErrNoSync = errors.New("mse: no synchronisation marker within the padding limit")
	// ErrUnknownSKey: an incoming peer asked for a torrent we do not serve.
	ErrUnknownSKey = errors.New("mse: the peer asked for an unknown torrent")
	// ErrBadVC: the decrypted verification constant is not zero (wrong key).
	ErrBadVC = errors.New("mse: bad verification constant")
	// ErrPadTooLong: a padding length over MaxPad.
	ErrPadTooLong = errors.New("mse: padding longer than 512 bytes")
	// ErrNoMethod: no crypto method in common, or the peer selected one
	// we did not provide.
	ErrNoMethod = errors.New("mse: no crypto method in common")
)

// The 768-bit prime P of the specification; the generator G is 2.
var (
	prime = func() *big.Int {
		p, ok := new(big.Int).SetString("FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A63A36210000000000090563", 16)
		if !ok {
			panic("mse: bad prime")
		}
		return p
	}()
	generator   = big.NewInt(2)
	primeLess1  = new(big.Int).Sub(prime, big.NewInt(1))
	privMax     = new(big.Int).Lsh(big.NewInt(1), privBits)
	zeroPad     [MaxPad]byte
	verifyConst [vcLen]byte
)

// keyPair is one side's Diffie-Hellman key.
type keyPair struct {
	x *big.Int     // private exponent
	y [KeyLen]byte // public key, big-endian, zero-padded
}

// newKeyPair draws a private exponent from rnd.
func newKeyPair(rnd io.Reader) (keyPair, error) {
	x, err := rand.Int(rnd, privMax)
	if err != nil {
		return keyPair{}, fmt.Errorf("mse: private key: %w", err)
	}
	x.Add(x, big.NewInt(2)) // never 0 or 1
	var k keyPair
	k.x = x
	new(big.Int).Exp(generator, x, prime).FillBytes(k.y[:])
	return k, nil
}

// secret computes S from the peer's public key, refusing the keys that
// would make S guessable.
func (k keyPair) secret(peer []byte) ([KeyLen]byte, error) {
	var s [KeyLen]byte
	y := new(big.Int).SetBytes(peer)
	if y.Cmp(big.NewInt(1)) <= 0 || y.Cmp(primeLess1) >= 0 {
		return s, ErrBadKey
	}
	new(big.Int).Exp(y, k.x, prime).FillBytes(s[:])
	return s, nil
}

// hash is the specification's HASH: SHA-1 of the concatenation.
func hash(parts ...[]byte) [sha1.Size]byte {
	h := sha1.New()
	for _, p := range parts {
		h.Write(p)
	}
	var sum [sha1.Size]byte
	h.Sum(sum[:0])
	return sum
}

// newCipher is the RC4 stream keyed with HASH(name, S, SKEY), its first
// 1024 bytes discarded.
func newCipher(name string, s []byte, skey [20]byte) *rc4 {
	key := hash([]byte(name), s, skey[:])
	c := newRC4(key[:])
	var junk [discardLen]byte
	c.XORKeyStream(junk[:], junk[:])
	return c
}

// randomPad returns a random padding length in [0, MaxPad] and fills that
// much of buf (at least MaxPad long) with random bytes.
func randomPad(rnd io.Reader, buf []byte) ([]byte, error) {
	var b [2]byte
	if _, err := io.ReadFull(rnd, b[:]); err != nil {
		return nil, fmt.Errorf("mse: padding: %w", err)
	}
	n := int(binary.BigEndian.Uint16(b[:])) % (MaxPad + 1)
	if _, err := io.ReadFull(rnd, buf[:n]); err != nil {
		return nil, fmt.Errorf("mse: padding: %w", err)
	}
	return buf[:n], nil
}

// Initiate runs the dialling side (A) of the handshake on conn, for the
// torrent skey (its info-hash), offering provide (Plaintext, RC4 or Both)
// and sending ia (at most MaxIA bytes, usually the BitTorrent handshake)
// as the initial payload. ctx bounds the whole exchange: its deadline
// becomes conn's, and cancelling it interrupts it. On success the returned
// Conn reads and writes the payload stream (the peer's answer to ia is its
// first bytes); on error conn should be closed.
func Initiate(ctx context.Context, conn net.Conn, skey [20]byte, provide Method, ia []byte) (*Conn, error) {
	return initiate(ctx, conn, skey, provide, ia, rand.Reader)
}

func initiate(ctx context.Context, conn net.Conn, skey [20]byte, provide Method, ia []byte, rnd io.Reader) (*Conn, error) {
	if provide&Both == 0 {
		return nil, fmt.Errorf("%w: we provide none (%v)", ErrNoMethod, provide)
	}
	if len(ia) > MaxIA {
		return nil, fmt.Errorf("mse: initial payload of %d bytes is over %d", len(ia), MaxIA)
	}
	var c *Conn
	err := netctx.Do(ctx, conn, func() error {
		key, err := newKeyPair(rnd)
		if err != nil {
			return err
		}
		// 1: Ya, PadA.
		var out [KeyLen + MaxPad]byte
		copy(out[:], key.y[:])
		pad, err := randomPad(rnd, out[KeyLen:])
		if err != nil {
			return err
		}
		if _, err := conn.Write(out[:KeyLen+len(pad)]); err != nil {
			return fmt.Errorf("mse: sending our key: %w", err)
		}
		// 2: Yb (PadB follows; we skip it when syncing on step 4).
		var yb [KeyLen]byte
		if _, err := io.ReadFull(conn, yb[:]); err != nil {
			return fmt.Errorf("mse: reading the peer's key: %w", unexpected(err))
		}
		s, err := key.secret(yb[:])
		if err != nil {
			return err
		}
		// 3: the two hashes, then the encrypted VC, crypto_provide, PadC
		// (empty), IA.
		enc := newCipher("keyA", s[:], skey)
		dec := newCipher("keyB", s[:], skey)
		req1 := hash([]byte("req1"), s[:])
		req2 := hash([]byte("req2"), skey[:])
		req3 := hash([]byte("req3"), s[:])
		msg := make([]byte, 0, 40+vcLen+4+2+2+len(ia))
		msg = append(msg, req1[:]...)
		for i := range req2 {
			msg = append(msg, req2[i]^req3[i])
		}
		plainStart := len(msg)
		msg = append(msg, verifyConst[:]...)
		msg = binary.BigEndian.AppendUint32(msg, uint32(provide&Both))
		msg = binary.BigEndian.AppendUint16(msg, 0) // len(PadC)
		msg = binary.BigEndian.AppendUint16(msg, uint16(len(ia)))
		msg = append(msg, ia...)
		enc.XORKeyStream(msg[plainStart:], msg[plainStart:])
		if _, err := conn.Write(msg); err != nil {
			return fmt.Errorf("mse: sending the handshake: %w", err)
		}
		// 4: find ENCRYPT(VC) after PadB, then crypto_select, PadD.
		var marker [vcLen]byte
		dec.XORKeyStream(marker[:], verifyConst[:])
		rest, err := syncOn(conn, marker[:])
		if err != nil {
			return err
		}
		c = &Conn{Conn: conn, pre: rest, dec: dec, enc: enc, decLeft: -1}
		var sel [6]byte
		if _, err := io.ReadFull(c, sel[:]); err != nil {
			return fmt.Errorf("mse: reading crypto_select: %w", unexpected(err))
		}
		method := Method(binary.BigEndian.Uint32(sel[:4]))
		if method != Plaintext && method != RC4 || method&provide == 0 {
			return fmt.Errorf("%w: peer selected %v, we provided %v", ErrNoMethod, method, provide)
		}
		if err := skipPad(c, binary.BigEndian.Uint16(sel[4:])); err != nil {
			return err
		}
		c.method, c.skey = method, skey
		if method == Plaintext {
			c.dec, c.enc = nil, nil
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Accept runs the receiving side (B) of the handshake on conn, from its
// first byte. skeys yields the info-hashes we serve; the peer's is found
// by trying each (one SHA-1 per torrent). allow is what we accept: RC4 is
// chosen when both sides allow it, else Plaintext. ctx bounds the whole
// exchange as in Initiate. On success the Conn's first bytes are the
// peer's initial payload (its BitTorrent handshake), SKey names the
// torrent, and Method says what was chosen; on error conn should be closed.
//
// peeked are bytes the caller already read from conn (to tell MSE from a
// plain BitTorrent handshake by the first 20 bytes); they are taken as the
// start of the stream.
func Accept(ctx context.Context, conn net.Conn, peeked []byte, skeys iter.Seq[[20]byte], allow Method) (*Conn, error) {
	return accept(ctx, conn, peeked, skeys, allow, rand.Reader)
}

func accept(ctx context.Context, conn net.Conn, peeked []byte, skeys iter.Seq[[20]byte], allow Method, rnd io.Reader) (*Conn, error) {
	if allow&Both == 0 {
		return nil, fmt.Errorf("%w: we allow none (%v)", ErrNoMethod, allow)
	}
	if len(peeked) > KeyLen {
		return nil, fmt.Errorf("mse: %d peeked bytes, at most %d", len(peeked), KeyLen)
	}
	// Until the keys are known c passes bytes through: peeked first.
	c := &Conn{Conn: conn, pre: peeked, decLeft: -1}
	err := netctx.Do(ctx, conn, func() error {
		// 1: Ya (PadA follows; skipped when syncing on step 3).
		var ya [KeyLen]byte
		if _, err := io.ReadFull(c, ya[:]); err != nil {
			return fmt.Errorf("mse: reading the peer's key: %w", unexpected(err))
		}
		key, err := newKeyPair(rnd)
		if err != nil {
			return err
		}
		s, err := key.secret(ya[:])
		if err != nil {
			return err
		}
		// 2: Yb, PadB.
		var out [KeyLen + MaxPad]byte
		copy(out[:], key.y[:])
		pad, err := randomPad(rnd, out[KeyLen:])
		if err != nil {
			return err
		}
		if _, err := conn.Write(out[:KeyLen+len(pad)]); err != nil {
			return fmt.Errorf("mse: sending our key: %w", err)
		}
		// 3: HASH('req1', S) ends PadA; then the SKEY hash.
		req1 := hash([]byte("req1"), s[:])
		rest, err := syncOn(c, req1[:])
		if err != nil {
			return err
		}
		c.pre = rest
		var req23 [sha1.Size]byte
		if _, err := io.ReadFull(c, req23[:]); err != nil {
			return fmt.Errorf("mse: reading the torrent's hash: %w", unexpected(err))
		}
		req3 := hash([]byte("req3"), s[:])
		var want [sha1.Size]byte
		for i := range want {
			want[i] = req23[i] ^ req3[i]
		}
		found := false
		for k := range skeys {
			if hash([]byte("req2"), k[:]) == want {
				c.skey, found = k, true
				break
			}
		}
		if !found {
			return ErrUnknownSKey
		}
		c.dec = newCipher("keyA", s[:], c.skey)
		c.enc = newCipher("keyB", s[:], c.skey)
		var hdr [vcLen + 4 + 2]byte
		if _, err := io.ReadFull(c, hdr[:]); err != nil {
			return fmt.Errorf("mse: reading crypto_provide: %w", unexpected(err))
		}
		if !bytes.Equal(hdr[:vcLen], verifyConst[:]) {
			return ErrBadVC
		}
		provide := Method(binary.BigEndian.Uint32(hdr[vcLen:]))
		if err := skipPad(c, binary.BigEndian.Uint16(hdr[vcLen+4:])); err != nil {
			return err
		}
		var lenIA [2]byte
		if _, err := io.ReadFull(c, lenIA[:]); err != nil {
			return fmt.Errorf("mse: reading len(IA): %w", unexpected(err))
		}
		switch both := provide & allow; {
		case both&RC4 != 0:
			c.method = RC4
		case both&Plaintext != 0:
			c.method = Plaintext
		default:
			return fmt.Errorf("%w: peer provides %v, we allow %v", ErrNoMethod, provide, allow)
		}
		// 4: ENCRYPT(VC, crypto_select, len(PadD) = 0).
		var ans [vcLen + 4 + 2]byte
		binary.BigEndian.PutUint32(ans[vcLen:], uint32(c.method))
		c.enc.XORKeyStream(ans[:], ans[:])
		if _, err := conn.Write(ans[:]); err != nil {
			return fmt.Errorf("mse: sending crypto_select: %w", err)
		}
		if c.method == Plaintext {
			// IA was encrypted whatever the method; the rest is not.
			c.enc = nil
			c.decLeft = int(binary.BigEndian.Uint16(lenIA[:]))
			if c.decLeft == 0 {
				c.dec = nil
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// syncOn reads conn until marker, which must end within MaxPad bytes of
// padding, and returns what was read after it (to be read before conn).
// It never reads more than MaxPad+len(marker) bytes.
func syncOn(conn io.Reader, marker []byte) ([]byte, error) {
	buf := make([]byte, MaxPad+len(marker))
	n := 0
	for n < len(buf) {
		m, err := conn.Read(buf[n:])
		n += m
		if i := bytes.Index(buf[:n], marker); i >= 0 {
			return buf[i+len(marker) : n], nil
		}
		if err != nil {
			return nil, fmt.Errorf("mse: looking for the end of the padding: %w", unexpected(err))
		}
	}
	return nil, ErrNoSync
}

// skipPad reads and drops a padding of n bytes, refusing more than MaxPad.
func skipPad(r io.Reader, n uint16) error {
	if n > MaxPad {
		return fmt.Errorf("%w: %d", ErrPadTooLong, n)
	}
	var pad [MaxPad]byte
	if _, err := io.ReadFull(r, pad[:n]); err != nil {
		return fmt.Errorf("mse: reading padding: %w", unexpected(err))
	}
	return nil
}

// unexpected turns a clean EOF in the middle of the handshake into
// io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
