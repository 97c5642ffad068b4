package mse

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// The seed corpora live in testdata/fuzz/<target>/: valid handshakes for
// the fixed keys below and hostile variants (BTFS_WRITE_CORPUS=1 go test
// -run TestWriteCorpus rewrites them). Each input is everything the peer
// sends, from its public key on; our side's key is drawn from a fixed
// seed, so the valid inputs stay valid.

var (
	fuzzOurSeed  = [32]byte{1}
	fuzzPeerSeed = [32]byte{2}
)

// maxHandshakeRead is the most a handshake may read from the peer before
// it succeeds or fails: key, pad, two hashes, the header, a pad, len(IA)
// (the IA itself is left to the caller).
const maxHandshakeRead = KeyLen + MaxPad + 20 + 20 + vcLen + 4 + 2 + MaxPad + 2

// bufConn is a connection whose peer has already sent everything: Read
// serves data then io.EOF, Write swallows, deadlines are moot.
type bufConn struct {
	net.Conn // nil: only the methods below are used
	r        *bytes.Reader
	n        int // bytes read
}

func (c *bufConn) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}
func (c *bufConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *bufConn) SetDeadline(time.Time) error      { return nil }
func (c *bufConn) SetReadDeadline(time.Time) error  { return nil }
func (c *bufConn) SetWriteDeadline(time.Time) error { return nil }

// fuzzSecret is S between the peer's fixed key and ours.
func fuzzSecret() (peerY [KeyLen]byte, s [KeyLen]byte) {
	ours, _ := newKeyPair(rand.NewChaCha8(fuzzOurSeed))
	peer, _ := newKeyPair(rand.NewChaCha8(fuzzPeerSeed))
	s, _ = peer.secret(ours.y[:])
	return peer.y, s
}

// initiatorStream is what an initiator sends with the given fields.
func initiatorStream(skey [20]byte, padA int, vc byte, provide uint32, padClaim uint16, padC int, ia []byte) []byte {
	y, s := fuzzSecret()
	out := append(y[:], make([]byte, padA)...)
	req1 := hash([]byte("req1"), s[:])
	req2 := hash([]byte("req2"), skey[:])
	req3 := hash([]byte("req3"), s[:])
	out = append(out, req1[:]...)
	for i := range req2 {
		out = append(out, req2[i]^req3[i])
	}
	enc := []byte{vc, 0, 0, 0, 0, 0, 0, 0}
	enc = binary.BigEndian.AppendUint32(enc, provide)
	enc = binary.BigEndian.AppendUint16(enc, padClaim)
	enc = append(enc, make([]byte, padC)...)
	enc = binary.BigEndian.AppendUint16(enc, uint16(len(ia)))
	enc = append(enc, ia...)
	enc = append(enc, "payload after IA"...)
	newCipher("keyA", s[:], skey).XORKeyStream(enc, enc)
	return append(out, enc...)
}

// receiverStream is what a receiver sends with the given fields.
func receiverStream(skey [20]byte, padB int, sel uint32, padClaim uint16, padD int) []byte {
	y, s := fuzzSecret()
	out := append(y[:], make([]byte, padB)...)
	enc := make([]byte, vcLen)
	enc = binary.BigEndian.AppendUint32(enc, sel)
	enc = binary.BigEndian.AppendUint16(enc, padClaim)
	enc = append(enc, make([]byte, padD)...)
	enc = append(enc, "payload"...)
	newCipher("keyB", s[:], skey).XORKeyStream(enc, enc)
	return append(out, enc...)
}

func acceptSeeds() map[string][]byte {
	hs := []byte("\x13BitTorrent protocol........info-hash-info-hash-peer-id-peer-id-peer")
	return map[string][]byte{
		"valid-rc4":          initiatorStream(ihA, 0, 0, uint32(Both), 0, 0, hs),
		"valid-plain-pads":   initiatorStream(ihB, MaxPad, 0, uint32(Plaintext), MaxPad, MaxPad, hs),
		"valid-no-ia":        initiatorStream(ihA, 7, 0, uint32(RC4), 3, 3, nil),
		"pad-claim-65535":    initiatorStream(ihA, 0, 0, uint32(Both), 65535, 0, nil),
		"padA-too-long":      initiatorStream(ihA, MaxPad+1, 0, uint32(Both), 0, 0, hs),
		"bad-vc":             initiatorStream(ihA, 0, 1, uint32(Both), 0, 0, hs),
		"no-method":          initiatorStream(ihA, 0, 0, 8, 0, 0, hs),
		"unknown-torrent":    initiatorStream(ihC, 0, 0, uint32(Both), 0, 0, hs),
		"garbage-after-key":  append(initiatorStream(ihA, 0, 0, uint32(Both), 0, 0, nil)[:KeyLen], bytes.Repeat([]byte{0xAB}, 1000)...),
		"valid-ia-truncated": initiatorStream(ihA, 0, 0, uint32(Both), 0, 0, make([]byte, 100))[:KeyLen+40+16+50],
	}
}

func initiateSeeds() map[string][]byte {
	return map[string][]byte{
		"valid-rc4":          receiverStream(ihA, 0, uint32(RC4), 0, 0),
		"valid-plain-pads":   receiverStream(ihA, MaxPad, uint32(Plaintext), MaxPad, MaxPad),
		"pad-claim-65535":    receiverStream(ihA, 0, uint32(RC4), 65535, 0),
		"padB-too-long":      receiverStream(ihA, MaxPad+1, uint32(RC4), 0, 0),
		"selects-both":       receiverStream(ihA, 0, uint32(Both), 0, 0),
		"wrong-torrent":      receiverStream(ihB, 0, uint32(RC4), 0, 0),
		"truncated-after-vc": receiverStream(ihA, 0, uint32(RC4), 0, 0)[:KeyLen+vcLen+2],
	}
}

// TestWriteCorpus rewrites the seed corpora when BTFS_WRITE_CORPUS=1.
func TestWriteCorpus(t *testing.T) {
	if os.Getenv("BTFS_WRITE_CORPUS") != "1" {
		t.Skip("BTFS_WRITE_CORPUS=1 rewrites testdata/fuzz")
	}
	for target, seeds := range map[string]map[string][]byte{"FuzzAccept": acceptSeeds(), "FuzzInitiate": initiateSeeds()} {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, data := range seeds {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", data)
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// FuzzAccept feeds the receiving side an initiator's bytes. It must not
// panic, must read no more than the specification's limits allow, and
// may succeed only with a method both sides allow and a torrent we serve.
func FuzzAccept(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		conn := &bufConn{r: bytes.NewReader(data)}
		allow := Both
		if len(data) > 0 && data[len(data)-1]&1 == 1 {
			allow = RC4
		}
		c, err := accept(context.Background(), conn, nil, slices.Values([][20]byte{ihA, ihB}), allow, rand.NewChaCha8(fuzzOurSeed))
		if conn.n > maxHandshakeRead {
			t.Fatalf("read %d bytes, more than %d", conn.n, maxHandshakeRead)
		}
		if err != nil {
			return
		}
		if c.Method()&allow == 0 || (c.Method() != RC4 && c.Method() != Plaintext) {
			t.Fatalf("method %v with allow %v", c.Method(), allow)
		}
		if c.SKey() != ihA && c.SKey() != ihB {
			t.Fatalf("skey %x", c.SKey())
		}
		buf := make([]byte, 1<<10)
		for { // the rest reads without panicking
			if _, err := c.Read(buf); err != nil {
				break
			}
		}
	})
}

// FuzzInitiate feeds the dialling side a receiver's bytes, with the same
// rules.
func FuzzInitiate(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		conn := &bufConn{r: bytes.NewReader(data)}
		c, err := initiate(context.Background(), conn, ihA, RC4|Plaintext, []byte("ia"), rand.NewChaCha8(fuzzOurSeed))
		if conn.n > KeyLen+MaxPad+vcLen+4+2+MaxPad+MaxPad {
			t.Fatalf("read %d bytes", conn.n)
		}
		if err != nil {
			return
		}
		if c.Method() != RC4 && c.Method() != Plaintext {
			t.Fatalf("method %v", c.Method())
		}
	})
}

// TestCorpusValid checks that the valid seeds are valid and the hostile
// ones fail, so the corpus exercises what it names.
func TestCorpusValid(t *testing.T) {
	for name, data := range acceptSeeds() {
		_, err := accept(context.Background(), &bufConn{r: bytes.NewReader(data)}, nil, slices.Values([][20]byte{ihA, ihB}), Both, rand.NewChaCha8(fuzzOurSeed))
		if valid := len(name) > 5 && name[:5] == "valid"; valid != (err == nil) {
			t.Errorf("accept %s: %v", name, err)
		}
	}
	for name, data := range initiateSeeds() {
		_, err := initiate(context.Background(), &bufConn{r: bytes.NewReader(data)}, ihA, Both, nil, rand.NewChaCha8(fuzzOurSeed))
		if valid := len(name) > 5 && name[:5] == "valid"; valid != (err == nil) {
			t.Errorf("initiate %s: %v", name, err)
		}
	}
}
