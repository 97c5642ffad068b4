package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"btfs/bitfield"
	"btfs/engine/mse"
	"btfs/engine/wire"
	"btfs/storagewrapper"
)

// peer is one connection. The fields under "loop-owned" belong to the
// torrent's loop; the outbox is shared with the writer goroutine under its
// own mutex; the meters are atomic. The reader goroutine touches only conn,
// the wire.Reader and the meters.
type peer struct {
	t       *Torrent
	conn    net.Conn
	addr    netip.AddrPort // remote address
	key     string         // addr.String(): the storagewrapper's name for it
	id      [20]byte       // remote peer id
	fast    bool           // both sides speak BEP 6
	enc     mse.Method     // MSE method of the connection, 0 for plain
	network string         // the transport's ("tcp")
	ext     bool           // both sides speak BEP 10
	ctx     context.Context
	cancel  context.CancelFunc
	down    meter // payload bytes from it
	up      meter // payload bytes to it
	out     outbox
	started time.Time
	asked   askedSet // blocks the reader may file: asked of it, not yet answered or withdrawn

	// loop-owned:
	amChoking      bool                               // we choke it
	amInterested   bool                               // we told it we are interested
	uninterested   int                                // not-interested messages we sent it
	peerChoking    bool                               // it chokes us
	peerInterested bool                               // it wants our data
	has            *bitfield.Bitfield                 // its pieces (nil until bitfield/have-all/have-none)
	seed           bool                               // it sent have-all: has stays nil, the picker counts it as a seed
	outstanding    map[storagewrapper.Block]time.Time // our requests to it, with when they were sent
	outBytes       int                                // sum of outstanding lengths
	allowedFast    map[int]bool                       // pieces it lets us request while choked
	reqq           int                                // its request queue size (ext handshake), 0 unknown
	lastBlock      time.Time                          // last block it sent us
	slowStart      int                                // slow-start pipeline target: one more per block delivered; counts until the rate meter settles
	snubbed        bool                               // it had requests and sent nothing for snubTimeout
	unrequested    int                                // blocks it sent that we had not asked of it
	released       int                                // requests we withdrew (cancel, choke, reject, snub): late blocks it may still send
	closed         bool                               // removed from the swarm
	exts           extState                           // BEP 10 extensions: its IDs, PEX, ut_metadata budget (extensions.go)
	early          earlyPieces                        // its declared pieces while the piece count is unknown (metaphase.go)
}

// askedSet holds the blocks asked of one peer and neither answered nor
// withdrawn. The loop adds a block when it sends the request and removes it
// when it withdraws it; the reader takes a block out when it arrives and
// files it in the storagewrapper only if it was there. So a peer can only
// ever write the blocks we asked of it: not blocks handed out to another
// peer, not blocks of pieces it never had (the storagewrapper alone cannot
// tell whose request a block answers).
type askedSet struct {
	mu sync.Mutex                        // guards m: the loop and the reader share it
	m  map[storagewrapper.Block]struct{} // the blocks asked and still expected
}

func (a *askedSet) add(b storagewrapper.Block) {
	a.mu.Lock()
	a.m[b] = struct{}{}
	a.mu.Unlock()
}

func (a *askedSet) remove(b storagewrapper.Block) {
	a.mu.Lock()
	delete(a.m, b)
	a.mu.Unlock()
}

// take removes b and reports whether it was there.
func (a *askedSet) take(b storagewrapper.Block) bool {
	a.mu.Lock()
	_, ok := a.m[b]
	delete(a.m, b)
	a.mu.Unlock()
	return ok
}

// outbox is what the loop wants written to a peer. Control messages and
// our requests go first, in order; blocks to upload are served one at a
// time after them, so a choke or a request never waits behind a long upload
// queue.
type outbox struct {
	mu      sync.Mutex
	msgs    []wire.Message // control messages and requests
	uploads []wire.Message // requests of the peer we will answer (ID Request)
	wake    chan struct{}  // capacity 1: something was added
}

func (o *outbox) push(m wire.Message) {
	o.mu.Lock()
	o.msgs = append(o.msgs, m)
	o.mu.Unlock()
	o.signal()
}

func (o *outbox) signal() {
	select {
	case o.wake <- struct{}{}:
	default:
	}
}

// queueUpload adds a request to serve; false when the queue is full.
func (o *outbox) queueUpload(m wire.Message, max int) bool {
	o.mu.Lock()
	ok := len(o.uploads) < max
	if ok {
		o.uploads = append(o.uploads, m)
	}
	o.mu.Unlock()
	if ok {
		o.signal()
	}
	return ok
}

// cancelUpload drops a queued request (the peer's cancel).
func (o *outbox) cancelUpload(index, begin, length uint32) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, u := range o.uploads {
		if u.Index == index && u.Begin == begin && u.Length == length {
			o.uploads = append(o.uploads[:i], o.uploads[i+1:]...)
			return
		}
	}
}

// dropUploads empties the upload queue and returns what was in it (we
// choked the peer).
func (o *outbox) dropUploads() []wire.Message {
	o.mu.Lock()
	defer o.mu.Unlock()
	u := o.uploads
	o.uploads = nil
	return u
}

// take returns the pending control messages and the next upload, if any.
func (o *outbox) take(msgs []wire.Message) ([]wire.Message, wire.Message, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	msgs = append(msgs[:0], o.msgs...)
	clear(o.msgs)
	o.msgs = o.msgs[:0]
	if len(o.uploads) == 0 {
		return msgs, wire.Message{}, false
	}
	u := o.uploads[0]
	o.uploads = o.uploads[1:]
	return msgs, u, true
}

func newPeer(t *Torrent, conn net.Conn, addr netip.AddrPort, hs wire.Handshake) *peer {
	ctx, cancel := context.WithCancel(t.ctx)
	return &peer{
		t:           t,
		conn:        conn,
		addr:        addr,
		key:         addr.String(),
		id:          hs.PeerID,
		fast:        hs.Reserved.SupportsFast(),
		ext:         hs.Reserved.SupportsExtensions(),
		ctx:         ctx,
		cancel:      cancel,
		out:         outbox{wake: make(chan struct{}, 1)},
		asked:       askedSet{m: make(map[storagewrapper.Block]struct{})},
		started:     time.Now(),
		amChoking:   true,
		peerChoking: true,
		outstanding: make(map[storagewrapper.Block]time.Time),
		slowStart:   startPipeline,
		allowedFast: make(map[int]bool),
	}
}

func (p *peer) String() string { return p.key }

// start launches the reader and writer goroutines.
func (p *peer) start() {
	p.t.wg.Add(2)
	go p.readLoop()
	go p.writeLoop()
}

// close ends both goroutines (closing the socket unblocks the reader).
func (p *peer) close() {
	p.cancel()
	p.conn.Close()
}

// send queues a message for the writer.
func (p *peer) send(m wire.Message) { p.out.push(m) }

// readLoop reads messages until the connection fails. Block data goes into
// the storagewrapper here, in this goroutine; everything else becomes a
// small event for the loop.
func (p *peer) readLoop() {
	defer p.t.wg.Done()
	// A connection of a magnet link's metadata phase reads with the piece
	// count unknown (wire caps the bitfield anyway); the loop checks the
	// indices once it knows.
	var lim wire.Limits
	select {
	case <-p.t.infoKnown:
		lim.NumPieces = p.t.info.NumPieces()
	default:
	}
	r := wire.NewReader(p.conn, lim)
	var err error
	for {
		if err = p.conn.SetReadDeadline(time.Now().Add(p.t.cfg.IdleTimeout)); err != nil {
			break
		}
		var m wire.Message
		m, err = r.ReadMessage()
		if errors.Is(err, wire.ErrRequestTooLarge) {
			continue // BEP 3: drop requests over 128 KiB, keep the connection
		}
		if err != nil {
			break
		}
		if m.KeepAlive {
			continue
		}
		var ev event
		switch m.ID {
		case wire.Piece:
			ev, err = p.gotBlock(m)
			if err != nil {
				break
			}
		case wire.Bitfield:
			m.Bitfield = append([]byte(nil), m.Bitfield...)
			ev = msgEvent{p: p, m: m}
		case wire.Extended:
			m.Payload = append([]byte(nil), m.Payload...)
			ev = msgEvent{p: p, m: m}
		default:
			ev = msgEvent{p: p, m: m}
		}
		if err != nil || !p.t.post(p.ctx, ev) {
			break
		}
	}
	if err == nil || errors.Is(err, io.EOF) || p.ctx.Err() != nil {
		err = nil
	}
	p.t.post(p.t.ctx, closedEvent{p: p, err: err})
}

// gotBlock files a piece message's block and describes the outcome for
// the loop. A block that was not asked of this peer is not filed: it is
// reported as unrequested and its bytes are dropped.
func (p *peer) gotBlock(m wire.Message) (event, error) {
	n := len(m.Block)
	if err := waitN(p.ctx, p.t.downLimit, n); err != nil {
		return nil, err
	}
	p.down.Add(n)
	p.t.down.Add(n)
	b := storagewrapper.Block{Piece: int(m.Index), Begin: int64(m.Begin), Length: n}
	if !p.asked.take(b) {
		return blockEvent{p: p, b: b, err: fmt.Errorf("%w: %s", errNotAsked, m)}, nil
	}
	// The digest and the piece's generation are read before the block is
	// filed: see smartban.go.
	gen := p.t.gens.get(b.Piece)
	sum := blockSum(p.t.sumSeed, m.Block)
	res, err := p.t.sw.PieceCameIn(b.Piece, b.Begin, m.Block, p.key)
	return blockEvent{p: p, b: b, res: res, err: err, gen: gen, sum: sum}, nil
}

// writeLoop writes what the loop queued: control messages and requests
// first, then one upload at a time, flushing when it runs out of work.
func (p *peer) writeLoop() {
	defer p.t.wg.Done()
	w := wire.NewWriter(p.conn)
	keepAlive := time.NewTimer(keepAliveInterval)
	defer keepAlive.Stop()
	var (
		msgs []wire.Message
		buf  []byte
		err  error
	)
	for err == nil {
		var up wire.Message
		var haveUp bool
		msgs, up, haveUp = p.out.take(msgs)
		if len(msgs) == 0 && !haveUp {
			if err = w.Flush(); err != nil {
				break
			}
			select {
			case <-p.ctx.Done():
				return
			case <-p.out.wake:
				continue
			case <-keepAlive.C:
				keepAlive.Reset(keepAliveInterval)
				msgs = append(msgs, wire.Message{KeepAlive: true})
			}
		}
		p.conn.SetWriteDeadline(time.Now().Add(p.t.cfg.IdleTimeout))
		for _, m := range msgs {
			if err = w.WriteMessage(m); err != nil {
				break
			}
		}
		if err == nil && haveUp {
			buf, err = p.upload(w, up, buf)
		}
		keepAlive.Reset(keepAliveInterval)
	}
	if p.ctx.Err() == nil {
		p.t.post(p.t.ctx, closedEvent{p: p, err: fmt.Errorf("writing: %w", err)})
	}
}

// upload answers one request with its block, read from verified data.
func (p *peer) upload(w *wire.Writer, req wire.Message, buf []byte) ([]byte, error) {
	n := int(req.Length)
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	off := p.t.info.PieceOffset(int(req.Index)) + int64(req.Begin)
	// The piece was verified when the loop queued the request, but it may
	// have left a shared cache since. ReadAt would then wait for it and
	// register a reader's want, making us download a piece because a peer
	// asked for it, with this writer (and so our own requests to the peer)
	// stuck behind it: a piece we do not have is rejected at once. The
	// deadline only bounds the race with an eviction between the two calls.
	var err error
	if !p.t.sw.DoIHave(int(req.Index)) {
		err = fmt.Errorf("piece %d is no longer verified", req.Index)
	} else {
		ctx, cancel := context.WithTimeout(p.ctx, uploadReadTimeout)
		_, err = p.t.sw.ReadAt(ctx, buf, off)
		cancel()
	}
	if err != nil {
		if p.ctx.Err() != nil {
			return buf, p.ctx.Err()
		}
		p.t.lim.Warn("cannot serve block", "peer", p.key, "piece", req.Index, "err", err)
		if p.fast {
			return buf, w.WriteMessage(wire.Message{ID: wire.RejectRequest, Index: req.Index, Begin: req.Begin, Length: req.Length})
		}
		return buf, nil
	}
	if err := waitN(p.ctx, p.t.upLimit, n); err != nil {
		return buf, err
	}
	if err := w.WriteMessage(wire.Message{ID: wire.Piece, Index: req.Index, Begin: req.Begin, Block: buf}); err != nil {
		return buf, err
	}
	p.up.Add(n)
	p.t.up.Add(n)
	return buf, nil
}
