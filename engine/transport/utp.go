package transport

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
// seedboxes) must not cost libtorrent's ~3.5 s of SYN retries: each
// dialler after the first starts after a head start (DefaultHeadStart) or
// at once when the one before failed, and the first to connect wins
// ("happy eyeballs" with uTP preferred). The dialler that connected is
// remembered per address: the next dial uses it alone, until it fails.

// DefaultHeadStart is how long a dialler (uTP) runs alone before the next
// (TCP) joins. Round trips to real peers are mostly under 300 ms; uTP's
// first SYN retransmission comes after 3 s.
const DefaultHeadStart = time.Second

// UTPDialer dials uTP from a socket (the one that listens, so that the
// peer sees our listen port as the source).
type UTPDialer struct{ Socket *utp.Socket }

// Network is "utp".
func (UTPDialer) Network() string { return "utp" }

// Dial connects over uTP.
func (d UTPDialer) Dial(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	return d.Socket.Dial(ctx, addr.String())
}

// networkOf names the transport of an accepted connection.
func networkOf(c net.Conn) string {
	switch {
	case utp.IsUTP(c):
		return "utp"
	case isTCP(c):
		return "tcp"
	}
	return c.LocalAddr().Network()
}

func isTCP(c net.Conn) bool { _, ok := c.(*net.TCPConn); return ok }

// connect opens a raw connection to addr: with the dialler that worked
// last for it, else with every dialler, staggered by HeadStart.
func (t *Transport) connect(ctx context.Context, addr netip.AddrPort) (net.Conn, string, error) {
	dialers := t.cfg.Dialers
	t.mu.Lock()
	known := t.works[addr]
	t.mu.Unlock()
	for _, d := range dialers {
		if d.Network() == known && len(dialers) > 1 {
			dialers = []Dialer{d}
			break
		}
	}
	c, network, err := t.race(ctx, addr, dialers)
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		delete(t.works, addr) // next time, every dialler again
		return nil, "", err
	}
	if _, ok := t.works[addr]; !ok && len(t.works) >= maxRemembered {
		for a := range t.works { // forget one at random
			delete(t.works, a)
			break
		}
	}
	t.works[addr] = network
	return c, network, nil
}

// race runs the diallers in order of preference, each HeadStart after the
// one before or as soon as it failed; the first connection wins and the
// others are cancelled (or closed, if they connected too).
func (t *Transport) race(ctx context.Context, addr netip.AddrPort, dialers []Dialer) (net.Conn, string, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		c       net.Conn
		network string
		err     error
	}
	results := make(chan result, len(dialers))
	next := 0
	start := func() {
		d := dialers[next]
		next++
		go func() {
			dctx, dcancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
			defer dcancel()
			c, err := d.Dial(dctx, addr)
			if err != nil {
				err = fmt.Errorf("%s: %w", d.Network(), err)
			}
			results <- result{c, d.Network(), err}
		}()
	}
	start()
	pending := 1
	timer := time.NewTimer(t.cfg.HeadStart)
	defer timer.Stop()
	var errs []error
	for pending > 0 {
		select {
		case <-timer.C:
			if next < len(dialers) {
				start()
				pending++
				timer.Reset(t.cfg.HeadStart)
			}
		case r := <-results:
			pending--
			if r.err == nil {
				cancel()
				for ; pending > 0; pending-- { // the losers: cancelled, or late successes
					if l := <-results; l.c != nil {
						l.c.Close()
					}
				}
				return r.c, r.network, nil
			}
			errs = append(errs, r.err)
			if next < len(dialers) && ctx.Err() == nil {
				start()
				pending++
				timer.Reset(t.cfg.HeadStart)
			}
		}
	}
	return nil, "", errors.Join(errs...)
}
