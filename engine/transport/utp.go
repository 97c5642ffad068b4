package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"btfs/engine/utp"
)

// Outgoing connections prefer uTP, as libtorrent does: uTP's LEDBAT
// yields to the user's other traffic, and many home peers behind NAT are
// reachable only over uTP. But a peer that speaks only TCP (aria2, many
// seedboxes) must not cost libtorrent's ~3.5 s of SYN retries, nor a
// fixed head start (a second on every first connection to such a peer,
// the whole first-byte time of a fresh mount on a TCP-only swarm): uTP
// and TCP are dialled at once, and a TCP connection that comes first
// waits for uTP only as long as a peer speaking both would take to answer
// it (race). The dialler that connected is remembered per address: the
// next dial uses it alone, until it fails.

// PatientHeadStart is the head start the preferred dialler (uTP) gets at
// an address where a less preferred one (TCP) connected and then failed
// its handshake: a peer that accepts TCP and drops it (libtorrent with
// TCP off still listens) may have won the race only because uTP was a
// few milliseconds slower, and without this every redial would go the
// same way.
const PatientHeadStart = time.Second

// handshakeFailed notes that a connection over network to addr failed
// its handshake: a less preferred network is not remembered as working,
// and the next dial gives the preferred one its head start
// (PatientHeadStart). A handshake that succeeds clears it
// (handshakeDone).
func (t *Transport) handshakeFailed(addr netip.AddrPort, network string) {
	if len(t.cfg.Dialers) < 2 || t.cfg.Dialers[0].Network() == network {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.works, addr)
	if !t.patient[addr] && len(t.patient) >= maxRemembered {
		for a := range t.patient { // forget one at random
			delete(t.patient, a)
			break
		}
	}
	t.patient[addr] = true
}

// handshakeDone clears handshakeFailed's note for addr.
func (t *Transport) handshakeDone(addr netip.AddrPort) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.patient, addr)
}

// DefaultPreferGrace is what a held TCP connection waits for uTP beyond
// twice its own connect time: libutp's processing and scheduling, which
// add a little to uTP's round trip.
const DefaultPreferGrace = 5 * time.Millisecond

// UTPDialer dials uTP from a socket (the one that listens, so that the
// peer sees our listen port as the source).
type UTPDialer struct{ Socket *utp.Socket }

// Network is "utp".
func (UTPDialer) Network() string { return "utp" }

// Dial connects over uTP.
func (d UTPDialer) Dial(ctx context.Context, addr netip.AddrPort) (net.Conn, error) {
	return d.Socket.Dial(ctx, addr.String())
}

// HintUTP records that addr is said to speak uTP (a PEX "utp" flag, BEP
// 11's 0x04). Without a uTP dialler, a failed dial to such a peer is
// counted (Stats.NoUTP) and logged: it may speak only uTP. A hint from a
// stranger changes nothing else; with a uTP dialler it is not kept.
func (t *Transport) HintUTP(addr netip.AddrPort) {
	if t.hasUTP() {
		return
	}
	addr = netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.saysUTP[addr] && len(t.saysUTP) >= maxRemembered {
		for a := range t.saysUTP { // forget one at random
			delete(t.saysUTP, a)
			break
		}
	}
	t.saysUTP[addr] = true
}

// hasUTP reports whether a dialler speaks uTP.
func (t *Transport) hasUTP() bool {
	for _, d := range t.cfg.Dialers {
		if d.Network() == "utp" {
			return true
		}
	}
	return false
}

// countDial counts what a connect taught about uTP: failed is the
// networks whose dial failed (not those cancelled because another won),
// network the one that connected ("" if none).
func (t *Transport) countDial(addr netip.AddrPort, network string, failed []string) {
	utpFailed := slices.Contains(failed, "utp")
	switch {
	case !t.hasUTP():
		if network != "" {
			return
		}
		t.mu.Lock()
		hinted := t.saysUTP[addr]
		t.mu.Unlock()
		if hinted {
			t.count(func(s *Stats) { s.NoUTP++ })
		}
	case utpFailed && network != "":
		t.count(func(s *Stats) { s.UTPFellBack++ })
	case utpFailed && slices.Contains(failed, "tcp"):
		t.count(func(s *Stats) { s.UTPAndTCPFailed++ })
	}
}

// logUTP writes the uTP line of count.
func (t *Transport) logUTP(st Stats) {
	if !t.hasUTP() {
		t.log.Info(fmt.Sprintf("%d peers may speak only uTP; -utp is off", st.NoUTP), "peers", st.NoUTP,
			"hint", "with few peers, drop -utp=false")
		return
	}
	t.log.Info("uTP dials failed", "fell_back_to_tcp", st.UTPFellBack, "tcp_failed_too", st.UTPAndTCPFailed)
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
	headStart := t.cfg.HeadStart
	if t.patient[addr] {
		headStart = max(headStart, PatientHeadStart)
	}
	t.mu.Unlock()
	for _, d := range dialers {
		if d.Network() == known && len(dialers) > 1 {
			dialers = []Dialer{d}
			break
		}
	}
	c, network, failed, err := t.race(ctx, addr, dialers, headStart)
	if ctx.Err() == nil {
		t.countDial(addr, network, failed)
	}
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
// one before (0: all at once) or as soon as it failed. A connection of the
// most preferred dialler still running wins at once; one of a less
// preferred dialler (TCP) is held while a more preferred one (uTP) may
// still answer: up to twice the time it took plus PreferGrace, since a
// peer that speaks both answers both in about one round trip. The losers
// are cancelled (or closed, if they connected too). failed lists the
// networks whose dial failed, or gave no answer within the grace, before a
// winner, in order.
func (t *Transport) race(ctx context.Context, addr netip.AddrPort, dialers []Dialer, headStart time.Duration) (c net.Conn, network string, failed []string, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		c       net.Conn
		network string
		rank    int           // the dialler's place in dialers
		took    time.Duration // from its start to its result
		err     error
	}
	results := make(chan result, len(dialers))
	running := make([]bool, len(dialers))
	next, pending := 0, 0
	start := func() {
		rank, d := next, dialers[next]
		next++
		pending++
		running[rank] = true
		begun := time.Now()
		go func() {
			dctx, dcancel := context.WithTimeout(ctx, t.cfg.DialTimeout)
			defer dcancel()
			c, err := d.Dial(dctx, addr)
			if err != nil {
				err = fmt.Errorf("%s: %w", d.Network(), err)
			}
			results <- result{c, d.Network(), rank, time.Since(begun), err}
		}()
	}
	// preferredRunning reports whether a dialler preferred to rank's has
	// not answered yet.
	preferredRunning := func(rank int) bool { return slices.Contains(running[:rank], true) }
	// win ends the race with r: the others are cancelled, and those that
	// connected all the same are closed.
	win := func(r result) (net.Conn, string, []string, error) {
		cancel()
		for ; pending > 0; pending-- {
			if l := <-results; l.c != nil {
				l.c.Close()
			}
		}
		return r.c, r.network, failed, nil
	}
	start()
	for headStart <= 0 && next < len(dialers) {
		start()
	}
	stagger := time.NewTimer(headStart)
	defer stagger.Stop()
	var held *result
	var grace <-chan time.Time
	var errs []error
	for pending > 0 {
		select {
		case <-stagger.C:
			if next < len(dialers) && held == nil {
				start()
				stagger.Reset(headStart)
			}
		case <-grace:
			for rank, r := range running[:held.rank] {
				if r {
					failed = append(failed, dialers[rank].Network())
				}
			}
			return win(*held)
		case r := <-results:
			pending--
			running[r.rank] = false
			switch {
			case r.err == nil && held != nil && r.rank > held.rank:
				r.c.Close() // less preferred than the one held
			case r.err == nil && held != nil:
				held.c.Close()
				return win(r)
			case r.err == nil && preferredRunning(r.rank):
				held = &r
				grace = time.After(2*r.took + t.cfg.PreferGrace)
			case r.err == nil:
				return win(r)
			default:
				errs = append(errs, r.err)
				failed = append(failed, r.network)
				if held != nil && !preferredRunning(held.rank) {
					return win(*held)
				}
				if held == nil && next < len(dialers) && ctx.Err() == nil {
					start()
					stagger.Reset(headStart)
				}
			}
		}
	}
	if held != nil {
		return win(*held)
	}
	return nil, "", failed, errors.Join(errs...)
}
