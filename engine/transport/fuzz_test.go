package transport

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"btfs/engine/wire"
	"btfs/metainfo"
)

// The seed corpus lives in testdata/fuzz/FuzzAccept (BTFS_WRITE_CORPUS=1
// go test -run TestWriteCorpus rewrites it): plain handshakes for our
// torrent and another, the start of an MSE handshake, garbage.

// bufConn is a connection whose peer has already sent everything: Read
// serves data then io.EOF, Write swallows, deadlines are moot.
type bufConn struct {
	net.Conn // nil: only the methods below are used
	r        *bytes.Reader
}

func (c *bufConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *bufConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *bufConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *bufConn) SetDeadline(time.Time) error      { return nil }
func (c *bufConn) SetReadDeadline(time.Time) error  { return nil }
func (c *bufConn) SetWriteDeadline(time.Time) error { return nil }

func corpus() map[string][]byte {
	ours := handshake('p').Bytes()
	other := wire.Handshake{InfoHash: metainfo.Hash{7}}.Bytes()
	key := bytes.Repeat([]byte{0x5a}, 96)
	return map[string][]byte{
		"plain":          append(ours[:], "after"...),
		"plain-other":    other[:],
		"plain-short":    ours[:30],
		"mse-key-only":   key,
		"mse-key-junk":   append(key, bytes.Repeat([]byte{1}, 600)...),
		"almost-plain":   append([]byte("\x13BitTorrent protocoX"), ours[20:]...),
		"empty-ish":      {19},
		"policy-require": append(ours[:], 1), // the last byte picks the policy
	}
}

// TestWriteCorpus rewrites the seed corpus when BTFS_WRITE_CORPUS=1.
func TestWriteCorpus(t *testing.T) {
	if os.Getenv("BTFS_WRITE_CORPUS") != "1" {
		t.Skip("BTFS_WRITE_CORPUS=1 rewrites testdata/fuzz")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzAccept")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range corpus() {
		if err := os.WriteFile(filepath.Join(dir, name), fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzAccept feeds Accept what a peer sends, under the policy the last
// byte picks: it must not panic, and may succeed only with a handshake for
// our torrent, encrypted or not as the policy allows.
func FuzzAccept(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		policy := Prefer
		if len(data) > 0 {
			policy = Policy(data[len(data)-1] % 3)
		}
		tr := New(Config{Policy: policy})
		ours := handshake('s')
		c, err := tr.Accept(context.Background(), &bufConn{r: bytes.NewReader(data)}, func(h metainfo.Hash) (wire.Handshake, bool) {
			return ours, h == ih
		}, slices.Values([][20]byte{ih}))
		if err != nil {
			return
		}
		if c.Peer.InfoHash != ih || c.Ours != ours {
			t.Fatalf("accepted %+v", c)
		}
		if policy == Require && !c.Encrypted() || policy == Off && c.Encrypted() {
			t.Fatalf("policy %v accepted encryption %v", policy, c.Encryption)
		}
	})
}
