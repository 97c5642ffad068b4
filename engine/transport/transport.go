// Package transport turns an address or an accepted socket into a
// handshaken BitTorrent connection: a dialler per transport (TCP, uTP:
// utp.go) below an optional MSE/PE layer (engine/mse) below the BitTorrent
// handshake (engine/wire). The engine dials and accepts through it (a
// magnet link's metadata phase included), so the encryption policy, the
// memory of which peers refuse encryption and the failure counts are one
// thing per process.
//
// Policy, like libtorrent's defaults: Prefer accepts both plain and
// encrypted incoming connections and dials encrypted first, falling back to
// a plain handshake when the peer hangs up on MSE, and remembering (per
// address) that it did, so a peer that refuses encryption costs the extra
// round trip once, not on every redial. Require speaks RC4-encrypted MSE
// only, both ways. Off speaks plain BitTorrent only, and refuses an
// incoming MSE handshake cleanly (it is recognised by its first 20 bytes,
// which are not the plain handshake's).
package transport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"btfs/engine/mse"
	"btfs/engine/wire"
	"btfs/internal/netctx"
	"btfs/metainfo"
)

// Policy is the encryption policy.
type Policy int

// The policies; the zero value is Prefer.
const (
	Prefer Policy = iota
	Require
	Off
)

// String is the flag's spelling.
func (p Policy) String() string {
	switch p {
	case Prefer:
		return "prefer"
	case Require:
		return "require"
	case Off:
		return "off"
	}
	return fmt.Sprintf("transport.Policy(%d)", int(p))
}

// ParsePolicy reads "prefer", "require" or "off".
func ParsePolicy(s string) (Policy, error) {
	for _, p := range []Policy{Prefer, Require, Off} {
		if s == p.String() {
			return p, nil
		}
	}
	return 0, fmt.Errorf("encryption policy %q: want prefer, require or off", s)
}

// Dialer opens raw connections over one transport: TCPDialer, UTPDialer
// (utp.go).
type Dialer interface {
	// Network names the transport in Conn and logs ("tcp", "utp").
	Network() string
	// Dial connects to addr within ctx.
	Dial(ctx context.Context, addr netip.AddrPort) (net.Conn, error)
}

// TCPDialer dials TCP.
type TCPDialer struct{}

// Network is "tcp".
func (TCPDialer) Network() string { return "tcp" }

// Dial connects over TCP.
func (TCPDialer) Dial(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr.String())
}

// Defaults of Config's zero fields (the engine's).
const (
	DefaultDialTimeout      = 5 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	// maxRemembered bounds the addresses known to refuse encryption, and
	// those whose working dialler is remembered.
	maxRemembered = 4096
	// logEvery is the shortest interval between two log lines of a kind
	// about lost connections (the encryption policy; uTP, utp.go).
	logEvery = time.Minute
	// DefaultMaxAccepting caps the incoming handshakes under way: each
	// costs a Diffie-Hellman exponentiation and buffers, and a flood of
	// connections must not turn into unbounded work.
	DefaultMaxAccepting = 64
)

// Config tunes a Transport; the zero value is usable.
type Config struct {
	// Policy is the encryption policy (zero: Prefer).
	Policy Policy
	// Dialers are tried in order of preference; nil means TCP only. Each
	// starts HeadStart after the one before it (or at once when that one
	// failed), and a connection of a less preferred one waits briefly for
	// the more preferred ones (utp.go).
	Dialers []Dialer
	// HeadStart is how long a dialler runs alone before the next one
	// joins; 0 starts them all at once.
	HeadStart time.Duration
	// PreferGrace is how long, beyond twice its own connect time, a
	// connection waits for a more preferred dialler still running (0:
	// DefaultPreferGrace).
	PreferGrace time.Duration
	// DialTimeout bounds connecting, HandshakeTimeout the MSE and
	// BitTorrent handshakes after it (0: the defaults).
	DialTimeout, HandshakeTimeout time.Duration
	// Logger gets one Info line a minute at most when connections failed
	// for lack of (or because of) encryption, and one when they failed
	// for lack of uTP (utp.go); nil discards.
	Logger *slog.Logger
	// MaxAccepting caps the incoming handshakes under way (0:
	// DefaultMaxAccepting); Accept refuses more at once (ErrBusy).
	MaxAccepting int
}

// Stats counts connections since the Transport was made.
type Stats struct {
	// EncryptedOut, PlainOut, EncryptedIn, PlainIn: handshaken
	// connections (encrypted means MSE, whatever method was selected).
	EncryptedOut, PlainOut, EncryptedIn, PlainIn int
	// Fallbacks: outgoing MSE attempts the peer refused, after which a
	// plain handshake worked (Prefer).
	Fallbacks int
	// NoEncryption: connections lost because the peer speaks no MSE
	// (Require: refused outgoing MSE attempts, incoming plain handshakes).
	NoEncryption int
	// RefusedEncrypted: incoming MSE handshakes refused (Off).
	RefusedEncrypted int
	// PlainFailed: outgoing plain handshakes that failed after the
	// connection was made (Off): the peer may want encryption.
	PlainFailed int
	// NoUTP: without a uTP dialler (-utp=false), dials that could not
	// connect to a peer said to speak uTP (HintUTP): it may speak only
	// uTP.
	NoUTP int
	// UTPFellBack: uTP dials that failed where TCP then connected.
	// UTPAndTCPFailed: dials where both failed (the peer is likely gone).
	UTPFellBack, UTPAndTCPFailed int
}

// Conn is a handshaken connection and what the engine may want to know
// about it.
type Conn struct {
	// Conn carries the stream after the BitTorrent handshake (decrypted
	// when encrypted).
	net.Conn
	// Peer is the peer's handshake, Ours what we sent.
	Peer, Ours wire.Handshake
	// Network is the dialler's ("tcp").
	Network string
	// Encryption is the MSE method selected (mse.RC4 or mse.Plaintext,
	// which obfuscates only the handshake), 0 for a plain connection.
	Encryption mse.Method
	// Outgoing is set for connections we dialled.
	Outgoing bool
}

// Encrypted reports whether the connection went through MSE.
func (c *Conn) Encrypted() bool { return c.Encryption != 0 }

// Errors of the policy.
var (
	// ErrPlainRefused: an incoming plain handshake under Require.
	ErrPlainRefused = errors.New("transport: plain connection refused (encryption required)")
	// ErrEncryptedRefused: an incoming MSE handshake under Off.
	ErrEncryptedRefused = errors.New("transport: encrypted connection refused (encryption off)")
	// ErrBusy: MaxAccepting incoming handshakes are already under way.
	ErrBusy = errors.New("transport: too many incoming handshakes under way")
)

// Transport dials and accepts peer connections under one policy. It is
// safe for concurrent use.
type Transport struct {
	cfg       Config
	log       *slog.Logger
	accepting chan struct{} // one token per incoming handshake under way

	mu        sync.Mutex
	plainOnly map[netip.AddrPort]bool   // Prefer: peers that refused MSE and took plain
	works     map[netip.AddrPort]string // the Network of the dialler that connected last (utp.go)
	patient   map[netip.AddrPort]bool   // a less preferred network connected, then failed its handshake (utp.go)
	saysUTP   map[netip.AddrPort]bool   // peers said to speak uTP (HintUTP, utp.go)
	stats     Stats
	policyLog logLine // connections lost to the encryption policy
	utpLog    logLine // connections lost for lack of uTP (utp.go)
}

// logLine spaces the log lines of one kind: a line is due when its count
// grew and the last one is logEvery old.
type logLine struct {
	last   time.Time // when it was last logged
	logged int       // the count in that line
}

// due reports whether a line counting n is due now, and if so takes it.
func (l *logLine) due(n int, now time.Time) bool {
	if n <= l.logged || now.Sub(l.last) < logEvery {
		return false
	}
	l.last, l.logged = now, n
	return true
}

// New returns a Transport; zero fields of cfg take the defaults.
func New(cfg Config) *Transport {
	if len(cfg.Dialers) == 0 {
		cfg.Dialers = []Dialer{TCPDialer{}}
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if cfg.PreferGrace <= 0 {
		cfg.PreferGrace = DefaultPreferGrace
	}
	if cfg.MaxAccepting <= 0 {
		cfg.MaxAccepting = DefaultMaxAccepting
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Transport{cfg: cfg, log: log, plainOnly: map[netip.AddrPort]bool{}, works: map[netip.AddrPort]string{},
		patient: map[netip.AddrPort]bool{},
		saysUTP: map[netip.AddrPort]bool{}, accepting: make(chan struct{}, cfg.MaxAccepting)}
}

// Policy is the encryption policy.
func (t *Transport) Policy() Policy { return t.cfg.Policy }

// Stats returns the counters.
func (t *Transport) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stats
}

// count updates the counters under the lock, then logs the policy
// failures and the uTP ones (logUTP), each at most once a minute: a user
// with few peers learns from the log what the flags cost.
func (t *Transport) count(fn func(s *Stats)) {
	t.mu.Lock()
	fn(&t.stats)
	now := time.Now()
	report := t.policyLog.due(t.stats.NoEncryption+t.stats.RefusedEncrypted+t.stats.PlainFailed, now)
	noUTP := t.utpLog.due(t.stats.NoUTP+t.stats.UTPFellBack+t.stats.UTPAndTCPFailed, now)
	st := t.stats
	t.mu.Unlock()
	if noUTP {
		t.logUTP(st)
	}
	if report {
		t.log.Info("connections lost to the encryption policy", "policy", t.cfg.Policy,
			"peer_without_encryption", st.NoEncryption, "refused_encrypted", st.RefusedEncrypted,
			"plain_handshake_failed", st.PlainFailed, "fallbacks_to_plain", st.Fallbacks,
			"hint", "with few peers, try -encryption prefer (the default)")
	}
}

// handshakeError marks a failure after the connection was made: the peer
// answered, but not as we wished.
type handshakeError struct{ err error }

func (e *handshakeError) Error() string { return e.err.Error() }
func (e *handshakeError) Unwrap() error { return e.err }

// Dial connects to addr and handshakes for ours.InfoHash as the policy
// says. ctx bounds it all (each attempt also has DialTimeout +
// HandshakeTimeout); the returned connection has no deadline.
func (t *Transport) Dial(ctx context.Context, addr netip.AddrPort, ours wire.Handshake) (*Conn, error) {
	encrypt := t.cfg.Policy == Require
	if t.cfg.Policy == Prefer {
		t.mu.Lock()
		encrypt = !t.plainOnly[addr]
		t.mu.Unlock()
	}
	if !encrypt {
		c, err := t.dialOnce(ctx, addr, ours, false)
		if err != nil && t.cfg.Policy == Prefer {
			// It may want encryption now: try that first next time.
			t.mu.Lock()
			delete(t.plainOnly, addr)
			t.mu.Unlock()
		}
		var he *handshakeError
		switch {
		case err == nil:
			t.count(func(s *Stats) { s.PlainOut++ })
		case t.cfg.Policy == Off && errors.As(err, &he) && ctx.Err() == nil && !errors.Is(err, wire.ErrInfoHashMismatch):
			t.count(func(s *Stats) { s.PlainFailed++ })
		}
		return c, err
	}
	c, err := t.dialOnce(ctx, addr, ours, true)
	if err == nil {
		t.count(func(s *Stats) { s.EncryptedOut++ })
		return c, nil
	}
	var he *handshakeError
	if !errors.As(err, &he) || ctx.Err() != nil || errors.Is(err, wire.ErrInfoHashMismatch) {
		return nil, err // no answer at all, or we were stopped
	}
	if t.cfg.Policy == Require {
		t.count(func(s *Stats) { s.NoEncryption++ })
		return nil, err
	}
	c, perr := t.dialOnce(ctx, addr, ours, false)
	if perr != nil {
		return nil, fmt.Errorf("encrypted: %w; plain: %w", err, perr)
	}
	t.mu.Lock()
	if len(t.plainOnly) >= maxRemembered {
		for a := range t.plainOnly { // forget one at random
			delete(t.plainOnly, a)
			break
		}
	}
	t.plainOnly[addr] = true
	t.mu.Unlock()
	t.count(func(s *Stats) { s.PlainOut++; s.Fallbacks++ })
	return c, nil
}

// dialOnce connects with the first dialler that works and handshakes,
// encrypted or not.
func (t *Transport) dialOnce(ctx context.Context, addr netip.AddrPort, ours wire.Handshake, encrypt bool) (*Conn, error) {
	raw, network, err := t.connect(ctx, addr)
	if err != nil {
		return nil, err
	}
	hctx, cancel := context.WithTimeout(ctx, t.cfg.HandshakeTimeout)
	defer cancel()
	c := &Conn{Conn: raw, Ours: ours, Network: network, Outgoing: true}
	if encrypt {
		provide := mse.Both
		if t.cfg.Policy == Require {
			provide = mse.RC4
		}
		hs := ours.Bytes()
		var mc *mse.Conn
		if mc, err = mse.Initiate(hctx, raw, ours.InfoHash, provide, hs[:]); err == nil {
			c.Conn, c.Encryption = mc, mc.Method()
			if c.Peer, err = wire.ReadHandshake(hctx, mc); err == nil && c.Peer.InfoHash != ours.InfoHash {
				err = fmt.Errorf("%w: dialled for %s, peer answered %s", wire.ErrInfoHashMismatch, ours.InfoHash, c.Peer.InfoHash)
			}
		}
	} else {
		c.Peer, err = wire.Initiate(hctx, raw, ours)
	}
	if err != nil {
		raw.Close()
		t.handshakeFailed(addr, network)
		return nil, &handshakeError{err}
	}
	t.handshakeDone(addr)
	return c, nil
}

// plainStart is how a plain handshake begins: the length byte and BEP 3's
// protocol string. An MSE stream begins with a random public key.
var plainStart = append([]byte{byte(len(wire.Protocol))}, wire.Protocol...)

// Accept handshakes an incoming connection from its first byte. serve
// gives our handshake for an info-hash we serve (false: refused; it must
// not block); infoHashes lists them for MSE's torrent lookup. ctx bounds
// the handshake together with HandshakeTimeout. On error conn should be
// closed.
func (t *Transport) Accept(ctx context.Context, conn net.Conn, serve func(metainfo.Hash) (wire.Handshake, bool), infoHashes iter.Seq[[20]byte]) (*Conn, error) {
	select {
	case t.accepting <- struct{}{}:
		defer func() { <-t.accepting }()
	default:
		return nil, ErrBusy
	}
	ctx, cancel := context.WithTimeout(ctx, t.cfg.HandshakeTimeout)
	defer cancel()
	network := networkOf(conn)
	var first [20]byte
	err := netctx.Do(ctx, conn, func() error {
		_, err := io.ReadFull(conn, first[:])
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("transport: reading the first bytes: %w", err)
	}
	c := &Conn{Conn: conn, Network: network}
	if bytes.Equal(first[:], plainStart) {
		if t.cfg.Policy == Require {
			t.count(func(s *Stats) { s.NoEncryption++ })
			return nil, ErrPlainRefused
		}
		if c.Peer, c.Ours, err = wire.AcceptPeeked(ctx, conn, first[:], serve); err != nil {
			return nil, err
		}
		t.count(func(s *Stats) { s.PlainIn++ })
		return c, nil
	}
	if t.cfg.Policy == Off {
		t.count(func(s *Stats) { s.RefusedEncrypted++ })
		return nil, ErrEncryptedRefused
	}
	allow := mse.Both
	if t.cfg.Policy == Require {
		allow = mse.RC4
	}
	mc, err := mse.Accept(ctx, conn, first[:], infoHashes, allow)
	if err != nil {
		return nil, err
	}
	c.Conn, c.Encryption = mc, mc.Method()
	c.Peer, c.Ours, err = wire.Accept(ctx, mc, func(h metainfo.Hash) (wire.Handshake, bool) {
		if h != mc.SKey() { // the handshake must be for the torrent MSE named
			return wire.Handshake{}, false
		}
		return serve(h)
	})
	if err != nil {
		return nil, err
	}
	t.count(func(s *Stats) { s.EncryptedIn++ })
	return c, nil
}
