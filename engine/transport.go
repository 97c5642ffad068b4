package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"btfs/engine/utp"
)

// Outgoing connections try uTP first, as libtorrent does: uTP's LEDBAT
// yields to the user's other traffic, and many home peers behind NAT are
// reachable only over uTP. But a peer that speaks only TCP (aria2, many
// seedboxes) must not cost libtorrent's ~3.5 s of SYN retries: TCP starts
// after a head start (DefaultUTPHeadStart, longer for a peer that PEX says
// speaks uTP) or at once when uTP fails, and the first to connect wins
// ("happy eyeballs" with uTP preferred). What worked is remembered per
// address: the next dial uses that transport alone, until it fails there.

// Defaults of the transport fields of Config.
const (
	// DefaultUTPHeadStart is how long a uTP dial runs alone before TCP
	// joins it. Round trips to real peers are mostly under 300 ms.
	DefaultUTPHeadStart = time.Second
	// utpHintedHeadStart is the head start for a peer said to speak uTP
	// (PEX flag 0x04): longer, but still under libtorrent's fallback.
	utpHintedHeadStart = 3 * time.Second
)

// via is the transport a connection uses, or a peer is known to speak.
type via uint8

const (
	viaAny via = iota // unknown: try both
	viaTCP
	viaUTP
)

func (v via) String() string {
	switch v {
	case viaTCP:
		return "tcp"
	case viaUTP:
		return "utp"
	}
	return "any"
}

// dialConn connects to addr the way the peer is known to answer (viaAny:
// both, uTP first); utpHint lengthens uTP's head start. It returns the
// transport that won.
func (t *Torrent) dialConn(ctx context.Context, addr netip.AddrPort, way via, utpHint bool) (net.Conn, via, error) {
	if t.cfg.UTP == nil {
		way = viaTCP
	}
	switch way {
	case viaTCP:
		c, err := t.dialTCP(ctx, addr)
		return c, viaTCP, err
	case viaUTP:
		c, err := t.dialUTP(ctx, addr)
		return c, viaUTP, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		c   net.Conn
		via via
		err error
	}
	results := make(chan result, 2)
	start := func(v via) {
		go func() {
			var r result
			if v == viaUTP {
				r.c, r.err = t.dialUTP(ctx, addr)
			} else {
				r.c, r.err = t.dialTCP(ctx, addr)
			}
			r.via = v
			results <- r
		}()
	}
	headStart := t.cfg.UTPHeadStart
	if utpHint {
		headStart = max(headStart, utpHintedHeadStart)
	}
	timer := time.NewTimer(headStart)
	defer timer.Stop()
	start(viaUTP)
	pending, tcpStarted := 1, false
	failed := map[via]error{}
	for pending > 0 {
		select {
		case <-timer.C:
			if !tcpStarted {
				tcpStarted = true
				pending++
				start(viaTCP)
			}
		case r := <-results:
			pending--
			if r.err == nil {
				cancel()
				for ; pending > 0; pending-- { // the loser: cancelled, or a late success
					if l := <-results; l.c != nil {
						l.c.Close()
					}
				}
				return r.c, r.via, nil
			}
			failed[r.via] = r.err
			if !tcpStarted && ctx.Err() == nil {
				tcpStarted = true
				pending++
				start(viaTCP)
			}
		}
	}
	return nil, viaAny, errors.Join(failed[viaUTP], failed[viaTCP])
}

// noteDialed remembers how an outgoing connection to k was made: TCP wins
// only when uTP failed or did not answer within its head start, so the
// next dial goes straight to what worked. A failed dial forgets it.
func (k *known) noteDialed(v via) { k.via = v }

// viaOf tells how an accepted connection came in.
func viaOf(c net.Conn) via {
	if utp.IsUTP(c) {
		return viaUTP
	}
	return viaTCP
}

func (t *Torrent) dialTCP(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	d := net.Dialer{Timeout: t.cfg.DialTimeout}
	c, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return nil, fmt.Errorf("tcp: %w", err)
	}
	return c, nil
}

func (t *Torrent) dialUTP(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
	defer cancel()
	return t.cfg.UTP.Dial(ctx, addr.String())
}
