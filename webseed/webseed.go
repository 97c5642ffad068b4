// Package webseed makes an HTTP server holding a torrent's files (BEP 19
// url-list) a source like a peer: Serve speaks the peer side of the
// BitTorrent wire protocol on one end of an in-process connection (the
// engine holds the other), turning the engine's block requests into HTTP
// Range requests. The engine then schedules it by the same deadlines as
// any peer (it has every piece), measures its rate, verifies its bytes and
// bans it when they fail — all without knowing it is HTTP.
//
// Contiguous requests are fetched together, one Range request per file
// they touch, up to MaxSpan bytes, and each block goes to the engine as
// soon as its bytes have arrived. A server error or timeout rejects the
// requests in hand and chokes the engine for a backoff (the server's
// Retry-After when it gave one); a server that cannot serve the files
// (404, no Range support) ends the connection.
package webseed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"btfs/engine/wire"
	"btfs/metainfo"
)

// Defaults of Config.
const (
	DefaultMaxSpan = 4 << 20
	DefaultConns   = 2
	// maxPending bounds the requests we hold (the engine's pipeline is
	// at most 512 blocks plus a few urgent ones).
	maxPending = 2048
	// minBackoff and maxBackoff bound the wait after a failure without
	// Retry-After: doubling from the first up to the second.
	minBackoff = time.Second
	maxBackoff = time.Minute
	// keepAlive is how often we show the engine we are alive while idle.
	keepAlive = 30 * time.Second
)

// Config tunes Serve. The zero value is usable.
type Config struct {
	// Logger receives failures; nil discards them.
	Logger *slog.Logger
	// Client makes the HTTP requests; nil means NewClient(). Share one
	// between webseeds: its Transport caps connections per host.
	Client *http.Client
	// MaxSpan is the most bytes one batch of requests covers; 0 means
	// DefaultMaxSpan.
	MaxSpan int64
	// Conns is how many batches run at once; 0 means DefaultConns.
	Conns int
}

// maxRedirects bounds the redirects followed for one request.
const maxRedirects = 5

// errTooManyRedirects: a redirect loop, or a chain too long to be one.
var errTooManyRedirects = fmt.Errorf("webseed: more than %d redirects", maxRedirects)

// NewClient is an HTTP client for webseeds: keep-alive, at most 4
// connections per host, at most 5 redirects, TLS with the system roots, a
// bound on waiting for response headers.
func NewClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxConnsPerHost = 4
	tr.MaxIdleConnsPerHost = 4
	tr.ResponseHeaderTimeout = 30 * time.Second
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return errTooManyRedirects
			}
			return nil
		},
	}
}

// block is one request of the engine's.
type block struct{ index, begin, length uint32 }

// server is one Serve call's state.
type server struct {
	info *metainfo.Info
	base string
	cfg  Config
	log  *slog.Logger

	wmu sync.Mutex
	w   *wire.Writer // guarded by wmu
	bw  net.Conn

	mu      sync.Mutex
	pending []block        // asked, not yet taken by a worker; guarded by mu
	wanted  map[block]bool // taken, not yet sent; false once cancelled; guarded by mu
	choked  bool           // backing off: requests are rejected; guarded by mu
	fails   int            // failures in a row; guarded by mu
	more    chan struct{}  // capacity 1: pending grew
}

// Serve serves the engine's requests for the torrent info (info-hash ih)
// from the webseed at base, on conn, until conn fails, ctx ends or the
// server proves useless. It does the handshake itself (the answering
// side). It returns why it stopped.
func Serve(ctx context.Context, conn net.Conn, info *metainfo.Info, ih metainfo.Hash, base string, cfg Config) error {
	defer conn.Close()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Client == nil {
		cfg.Client = NewClient()
	}
	if cfg.MaxSpan <= 0 {
		cfg.MaxSpan = DefaultMaxSpan
	}
	if cfg.Conns <= 0 {
		cfg.Conns = DefaultConns
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	_, _, err := wire.Accept(ctx, conn, func(h metainfo.Hash) (wire.Handshake, bool) {
		ours := wire.Handshake{InfoHash: ih, PeerID: wire.NewPeerID()}
		ours.Reserved.SetFast()
		return ours, h == ih
	})
	if err != nil {
		return fmt.Errorf("webseed: handshake: %w", err)
	}
	conn.SetDeadline(time.Time{})
	s := &server{info: info, base: base, cfg: cfg, log: cfg.Logger.With("webseed", base), w: wire.NewWriter(conn), bw: conn,
		wanted: make(map[block]bool), more: make(chan struct{}, 1)}
	if err := s.send(wire.Message{ID: wire.HaveAll}, wire.Message{ID: wire.Unchoke}); err != nil {
		return err
	}
	errc := make(chan error, cfg.Conns+2)
	var wg sync.WaitGroup
	wg.Go(func() { errc <- s.read(ctx, conn) })
	wg.Go(func() { s.keepAlive(ctx) })
	for range cfg.Conns {
		wg.Go(func() { errc <- s.work(ctx) })
	}
	err = <-errc
	cancel()
	conn.Close()
	wg.Wait()
	return err
}

// send writes messages to the engine.
func (s *server) send(ms ...wire.Message) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	for _, m := range ms {
		if err := s.w.WriteMessage(m); err != nil {
			return err
		}
	}
	return s.w.Flush()
}

// read takes the engine's requests and cancels.
func (s *server) read(ctx context.Context, conn net.Conn) error {
	r := wire.NewReader(conn, wire.Limits{NumPieces: s.info.NumPieces()})
	for {
		m, err := r.ReadMessage()
		if err != nil {
			return err
		}
		if m.KeepAlive {
			continue
		}
		b := block{m.Index, m.Begin, m.Length}
		switch m.ID {
		case wire.Request:
			if !s.valid(b) {
				return fmt.Errorf("webseed: bad request %v", m)
			}
			s.mu.Lock()
			reject := s.choked || len(s.pending) >= maxPending
			if !reject {
				s.pending = append(s.pending, b)
			}
			s.mu.Unlock()
			if reject {
				if err := s.send(reject1(b)); err != nil {
					return err
				}
				continue
			}
			select {
			case s.more <- struct{}{}:
			default:
			}
		case wire.Cancel:
			s.mu.Lock()
			if _, ok := s.wanted[b]; ok {
				s.wanted[b] = false
			}
			for i, p := range s.pending {
				if p == b {
					s.pending = append(s.pending[:i], s.pending[i+1:]...)
					break
				}
			}
			s.mu.Unlock()
		}
	}
}

func reject1(b block) wire.Message {
	return wire.Message{ID: wire.RejectRequest, Index: b.index, Begin: b.begin, Length: b.length}
}

// valid reports whether b lies inside its piece.
func (s *server) valid(b block) bool {
	return int(b.index) < s.info.NumPieces() && b.length > 0 && b.length <= 1<<17 &&
		int64(b.begin)+int64(b.length) <= s.info.PieceLen(int(b.index))
}

// off is b's offset in the torrent.
func (s *server) off(b block) int64 { return s.info.PieceOffset(int(b.index)) + int64(b.begin) }

// keepAlive sends a keep-alive now and then, so that a backing-off
// webseed is not dropped as idle.
func (s *server) keepAlive(ctx context.Context) {
	t := time.NewTicker(keepAlive)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if s.send(wire.Message{KeepAlive: true}) != nil {
				return
			}
		}
	}
}

// take removes a batch from pending: the oldest request, then the
// requests that continue it, up to MaxSpan bytes.
func (s *server) take() []block {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) == 0 || s.choked {
		return nil
	}
	batch := []block{s.pending[0]}
	s.pending = s.pending[1:]
	end := s.off(batch[0]) + int64(batch[0].length)
	size := int64(batch[0].length)
	for size < s.cfg.MaxSpan {
		i := -1
		for j, p := range s.pending {
			if s.off(p) == end {
				i = j
				break
			}
		}
		if i < 0 {
			break
		}
		b := s.pending[i]
		s.pending = append(s.pending[:i], s.pending[i+1:]...)
		batch = append(batch, b)
		end += int64(b.length)
		size += int64(b.length)
	}
	for _, b := range batch {
		s.wanted[b] = true
	}
	return batch
}

// work fetches batches until ctx ends or the server proves useless.
func (s *server) work(ctx context.Context) error {
	buf := make([]byte, 64<<10)
	for {
		batch := s.take()
		if batch == nil {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-s.more:
				continue
			}
		}
		sent, err := s.fetch(ctx, batch, buf)
		if err == nil {
			s.mu.Lock()
			s.fails = 0
			s.mu.Unlock()
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// Give back what was not sent, so the engine asks someone else.
		var rej []wire.Message
		s.mu.Lock()
		for _, b := range batch[sent:] {
			if s.wanted[b] {
				rej = append(rej, reject1(b))
			}
			delete(s.wanted, b)
		}
		s.mu.Unlock()
		if err := s.send(rej...); err != nil {
			return err
		}
		var te *TempError
		if !errors.As(err, &te) {
			s.log.Warn("webseed dropped", "err", err)
			return err
		}
		if err := s.backoff(ctx, te); err != nil {
			return err
		}
	}
}

// backoff chokes the engine (rejecting every request held) for the
// server's Retry-After or an exponential backoff, then unchokes it. Only
// one worker backs off at a time; the others find themselves choked.
func (s *server) backoff(ctx context.Context, te *TempError) error {
	s.mu.Lock()
	if s.choked {
		s.mu.Unlock()
		return nil
	}
	s.choked = true
	s.fails++
	d := te.After
	if d <= 0 {
		d = min(minBackoff<<min(s.fails-1, 10), maxBackoff)
	}
	rej := []wire.Message{{ID: wire.Choke}}
	for _, b := range s.pending {
		rej = append(rej, reject1(b))
	}
	s.pending = nil
	s.mu.Unlock()
	s.log.Info("webseed backing off", "for", d, "err", te.Err)
	if err := s.send(rej...); err != nil {
		return err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
	}
	s.mu.Lock()
	s.choked = false
	s.mu.Unlock()
	return s.send(wire.Message{ID: wire.Unchoke})
}

// fetch gets a batch's bytes, file by file, and sends each block as soon
// as it is whole. It returns how many blocks of the batch were dealt with
// (sent or cancelled).
func (s *server) fetch(ctx context.Context, batch []block, buf []byte) (int, error) {
	start := s.off(batch[0])
	var total int64
	for _, b := range batch {
		total += int64(b.length)
	}
	done := 0
	cur := make([]byte, 0, batch[0].length)
	out := func(p []byte) error {
		for len(p) > 0 {
			if done >= len(batch) {
				return errors.New("webseed: more bytes than asked") // cannot happen: spans add up
			}
			b := batch[done]
			n := min(len(p), int(b.length)-len(cur))
			cur = append(cur, p[:n]...)
			p = p[n:]
			if len(cur) < int(b.length) {
				continue
			}
			s.mu.Lock()
			want := s.wanted[b]
			delete(s.wanted, b)
			s.mu.Unlock()
			if want {
				if err := s.send(wire.Message{ID: wire.Piece, Index: b.index, Begin: b.begin, Block: cur}); err != nil {
					return err
				}
			}
			done++
			if done < len(batch) {
				cur = make([]byte, 0, batch[done].length)
			}
		}
		return nil
	}
	for _, sp := range Spans(s.base, s.info, start, total) {
		if err := fetchSpan(ctx, s.cfg.Client, sp, sp.FileLen, buf, out); err != nil {
			return done, err
		}
	}
	return done, nil
}
