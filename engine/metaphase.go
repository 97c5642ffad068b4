package engine

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"time"

	"btfs/bitfield"
	"btfs/engine/metadata"
	"btfs/engine/wire"
	"btfs/metainfo"
	"btfs/picker"
	"btfs/storagewrapper"
)

// The metadata phase (BEP 9) of a torrent started from a magnet link. The
// loop runs it like everything else: the same peers, address book,
// trackers, DHT lookups, PEX and LSD as the swarm that follows. While
// the info dictionary is unknown, ut_metadata requests go to the peers
// that announced a metadata_size (engine/metadata's Fetcher decides who
// is asked what and who lied); what peers declare of their pieces is
// kept raw (earlyPieces) because the piece count is not known yet. When
// the dictionary hashes to the info-hash, the storage is opened through
// Config.OpenStorage in a goroutine, and then the same connections go on
// into the swarm: our pieces as HAVEs, their declarations into the
// picker, interest, requests. No connection is made again, and the
// trackers have heard one "started".

// unknownLeft is the "left" announced while the size is unknown: any
// positive number says "leecher" (0 would make us a seed, which some
// trackers answer with leechers only, and which the Announcer takes as
// "never send completed"); one metadata piece is an honest lower bound.
const unknownLeft = wire.MetadataPieceSize

// ErrBadInfo is Err's (and Info's) error when peers delivered an info
// dictionary that hashes to the info-hash but is not a valid one: the
// magnet link names a broken torrent, and no other peer can do better.
var ErrBadInfo = errors.New("engine: the info dictionary matches the info-hash but is invalid")

// metaPhase is the loop's state while the info dictionary is fetched;
// nil once the swarm runs.
type metaPhase struct {
	fetcher *metadata.Fetcher // BEP 9 bookkeeping: sizes, requests, liars
	started time.Time         // when the Torrent started, for the failure summary
	hands   int               // connections admitted in this phase
	offers  int               // peers that announced a usable metadata_size
	opening bool              // the dictionary is verified; OpenStorage runs
}

func newMetaPhase(ih metainfo.Hash, maxSize int64) *metaPhase {
	return &metaPhase{fetcher: metadata.NewFetcher(ih, maxSize), started: time.Now()}
}

// earlyPieces is what a peer declared of its pieces before we knew how
// many there are: have-all, or a bitfield (have-none is an empty one)
// with its HAVEs set in it.
type earlyPieces struct {
	declared bool   // a bitfield, have-all, have-none or have came
	all      bool   // have-all
	bits     []byte // the bitfield as sent, grown by HAVEs; never longer than wire.MaxBitfieldUnknown
}

// storageEvent: OpenStorage returned.
type storageEvent struct {
	sw   *storagewrapper.Wrapper
	mode picker.Mode
	err  error
}

// setInfo records the info dictionary: in New for a torrent file, on the
// loop when a magnet link's has arrived. info and full are read by other
// goroutines only after infoKnown is closed.
func (t *Torrent) setInfo(full *metainfo.MetaInfo) {
	t.info, t.full = full.Info, full
	t.private = full.Info.Private
	t.meta = metadata.NewServer(full.InfoBytes)
	close(t.infoKnown)
}

// setStorage makes the picker and attaches sw: in New, or on the loop
// when OpenStorage has returned. sw and gens are read by other goroutines
// only after ready is closed (or, in a peer's reader, after a request the
// loop made later).
func (s *state) setStorage(sw *storagewrapper.Wrapper, mode picker.Mode) error {
	t := s.t
	pk, err := picker.New(t.info.PieceLength, t.info.TotalLength, rand.New(rand.NewPCG(t.cfg.Rand.Uint64(), t.cfg.Rand.Uint64())))
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	pk.SetMode(mode)
	s.pk = pk
	t.gens = newPieceGens(t.info.NumPieces())
	t.sw = sw
	close(t.ready)
	return nil
}

// Info returns the torrent with its info dictionary: at once for a
// torrent file, for a magnet link once the dictionary has arrived and
// verified. When ctx ends first, the error says what was tried (peers
// known, connected, banned, trackers, DHT) around ctx's error; when the
// Torrent stopped, it is Err's (ErrBadInfo wrapped) or ErrClosed.
func (t *Torrent) Info(ctx context.Context) (*metainfo.MetaInfo, error) {
	select {
	case <-t.infoKnown:
		return t.full, nil
	default:
	}
	select {
	case <-t.infoKnown:
		return t.full, nil
	case <-t.done:
		if t.err != nil {
			return nil, t.err
		}
		return nil, ErrClosed
	case <-ctx.Done():
		err := ctx.Err()
		if t.do(context.Background(), func() { err = t.s.metaFailure(err) }) != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
}

// fail stops the Torrent on its own with err (Err reports it).
func (s *state) fail(err error) {
	s.t.log.Error("torrent stopped", "err", err)
	s.t.err = err
	s.t.cancel()
}

// earlyMessage applies a message that arrived before the swarm runs:
// declarations are kept, requests refused (we have nothing), extension
// messages go where they always go.
func (s *state) earlyMessage(p *peer, m wire.Message) {
	switch m.ID {
	case wire.Choke:
		p.peerChoking = true
	case wire.Unchoke:
		p.peerChoking = false
	case wire.Interested:
		p.peerInterested = true
	case wire.NotInterested:
		p.peerInterested = false
	case wire.Bitfield:
		p.early = earlyPieces{declared: true, bits: m.Bitfield}
	case wire.HaveAll:
		p.early = earlyPieces{declared: true, all: true}
	case wire.HaveNone:
		p.early = earlyPieces{declared: true}
	case wire.Have:
		i := int(m.Index)
		if i >= wire.MaxBitfieldUnknown*8 {
			s.dropPeer(p, fmt.Errorf("%w: have %d before the info dictionary, cap %d", errProtocol, i, wire.MaxBitfieldUnknown*8))
			return
		}
		p.early.declared = true
		if !p.early.all {
			if n := i/8 + 1; len(p.early.bits) < n {
				p.early.bits = append(p.early.bits, make([]byte, n-len(p.early.bits))...)
			}
			p.early.bits[i/8] |= 0x80 >> (i % 8)
		}
	case wire.Request:
		if p.fast {
			p.send(wire.Message{ID: wire.RejectRequest, Index: m.Index, Begin: m.Begin, Length: m.Length})
		}
	case wire.Extended:
		if m.ExtendedID == 0 {
			s.onExtHandshake(p, m.Payload)
		} else {
			s.onExtended(p, m)
		}
	case wire.Port:
		s.onPort(p, m.Port)
	}
	// Cancel, reject, allowed-fast and suggest concern requests and
	// pieces that cannot exist yet: ignored.
}

// metaOffer reads a peer's extension handshake for the metadata phase:
// the ut_metadata ID and metadata_size that make it a source. A size over
// the cap is a lie (or a dictionary we refuse to hold): the peer is
// dropped and not dialled again in this phase. A peer with no size (a
// magnet leecher) or without ut_metadata stays: it may have pieces for
// later.
func (s *state) metaOffer(p *peer, size int64, parseErr error) {
	f := s.fetch
	if f == nil || f.opening {
		return
	}
	if errors.Is(parseErr, wire.ErrMetadataTooLarge) {
		s.noMetadata(p, parseErr)
		return
	}
	if p.exts.ids[wire.ExtMetadata] == 0 || size <= 0 {
		return
	}
	if err := f.fetcher.SetSize(p.key, size); err != nil {
		s.takeMetaBans()
		if p.closed {
			return
		}
		if !errors.Is(err, metadata.ErrSizeMismatch) || f.fetcher.Banned(p.key) {
			s.noMetadata(p, err)
			return
		}
		s.t.log.Debug("peer announced another metadata_size: kept in case it is right", "peer", p.key, "err", err)
	} else {
		s.t.log.Debug("peer has metadata", "peer", p.key, "size", size)
	}
	if !p.exts.metaOffered {
		p.exts.metaOffered = true
		f.offers++
	}
	s.pumpMeta(p, time.Now())
}

// noMetadata drops a peer that can never give us the metadata; its
// address is not dialled again before the dictionary is in.
func (s *state) noMetadata(p *peer, err error) {
	s.t.log.Debug("peer's metadata_size refused: not asking it", "peer", p.key, "err", err)
	if k := s.known[p.addr]; k != nil {
		k.noMeta = true
	}
	s.dropPeer(p, err)
}

// onMetaPiece files a ut_metadata data message; the last piece of a
// dictionary that hashes ends the phase.
func (s *state) onMetaPiece(p *peer, piece int, data []byte) {
	f := s.fetch
	if f == nil || f.opening {
		return
	}
	done, err := f.fetcher.Received(p.key, piece, data)
	s.takeMetaBans()
	switch {
	case done:
		s.infoArrived(f.fetcher.Result())
		return
	case err == nil:
		have, total := f.fetcher.Progress()
		s.t.log.Debug("metadata piece", "peer", p.key, "piece", piece, "have", have, "of", total)
	case errors.Is(err, metadata.ErrHashMismatch):
		s.t.log.Warn("metadata did not hash to the info-hash: fetching it again", "err", err)
	default:
		s.t.log.Debug("metadata piece dropped", "peer", p.key, "piece", piece, "err", err)
	}
	s.pumpAllMeta(time.Now())
}

// onMetaReject records a ut_metadata reject.
func (s *state) onMetaReject(p *peer, piece int) {
	f := s.fetch
	if f == nil || f.opening {
		return
	}
	if err := f.fetcher.Rejected(p.key, piece, time.Now()); err != nil {
		s.t.log.Debug("metadata reject ignored", "peer", p.key, "piece", piece, "err", err)
	}
	s.takeMetaBans()
	s.pumpAllMeta(time.Now())
}

// pumpMeta sends p every request the Fetcher has for it.
func (s *state) pumpMeta(p *peer, now time.Time) {
	f := s.fetch
	if f == nil || f.opening || p.closed {
		return
	}
	for {
		piece, ok := f.fetcher.NextRequest(p.key, now)
		if !ok {
			return
		}
		payload, err := wire.EncodeMetadataMsg(wire.MetadataMsg{Type: wire.MetadataRequest, Piece: piece})
		if err != nil { // cannot happen: a request for a valid piece
			s.t.log.Error("encoding a ut_metadata request", "err", err)
			return
		}
		if !s.sendExt(p, wire.ExtMetadata, payload) {
			return
		}
	}
}

// pumpAllMeta pumps every peer, in address order so that runs repeat.
func (s *state) pumpAllMeta(now time.Time) {
	if s.fetch == nil || s.fetch.opening {
		return
	}
	ps := make([]*peer, 0, len(s.peers))
	for p := range s.peers {
		if p.exts.metaOffered {
			ps = append(ps, p)
		}
	}
	slices.SortFunc(ps, func(a, b *peer) int { return a.addr.Compare(b.addr) })
	for _, p := range ps {
		s.pumpMeta(p, now)
	}
}

// takeMetaBans bans the hosts the Fetcher proved lying (a dictionary that
// did not hash, a piece of the wrong length).
func (s *state) takeMetaBans() {
	for _, id := range s.fetch.fetcher.TakeBanned() {
		ap, err := netip.ParseAddrPort(id) // ids are peer keys: AddrPort strings
		if err != nil {
			continue
		}
		s.ban(ap.Addr(), "it sent metadata that is not the torrent's")
	}
}

// infoArrived ends the fetch: the dictionary is the torrent's; the
// storage opens in a goroutine while the connections wait.
func (s *state) infoArrived(infoBytes []byte) {
	t := s.t
	info, err := metainfo.ParseInfo(infoBytes)
	if err != nil {
		s.fail(fmt.Errorf("%w: %s (%d bytes): %w", ErrBadInfo, t.mi.InfoHash, len(infoBytes), err))
		return
	}
	full := *t.mi
	full.Info, full.InfoBytes = info, infoBytes
	s.fetch.opening = true
	t.setInfo(&full)
	t.log.Info("metadata fetched", "bytes", len(infoBytes), "name", info.Name, "peers", len(s.peers),
		"took", time.Since(s.fetch.started).Round(time.Millisecond))
	if t.private { // BEP 27, known only now: no PEX, no DHT, no LSD from here on
		s.pexIn, s.localNeed, t.nodes = nil, nil, nil
		for p := range s.peers {
			p.exts.pexOut = nil
		}
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		sw, mode, err := t.cfg.OpenStorage(t.ctx, &full)
		t.post(t.ctx, storageEvent{sw: sw, mode: mode, err: err}) // sw stays the caller's to close, as New's does
	}()
}

// onStorage starts the swarm on the connections of the metadata phase.
func (s *state) onStorage(ev storageEvent) {
	t := s.t
	if ev.err == nil && ev.sw == nil {
		ev.err = errors.New("OpenStorage returned no storage")
	}
	if ev.err != nil {
		s.fail(fmt.Errorf("engine: opening the storage of %s: %w", t.info.Name, ev.err))
		return
	}
	if err := s.setStorage(ev.sw, ev.mode); err != nil {
		s.fail(err)
		return
	}
	s.fetch = nil
	s.startSwarm()
	n := t.info.NumPieces()
	bf := t.sw.Bitfield()
	for p := range s.peers {
		if p.ext { // again, now with our metadata_size
			if payload, err := s.extHandshake(p).Encode(); err == nil {
				p.send(wire.Message{ID: wire.Extended, ExtendedID: 0, Payload: payload})
			}
		}
		for i, ok := bf.NextSet(0); ok; i, ok = bf.NextSet(i + 1) {
			p.send(wire.Message{ID: wire.Have, Index: uint32(i)})
		}
		if p.peerInterested {
			s.maybeQuickUnchoke(p)
		}
		e := p.early
		p.early = earlyPieces{}
		switch {
		case e.all:
			s.onMessage(p, wire.Message{ID: wire.HaveAll})
		case e.declared:
			has := bitfield.New(n)
			for i := range len(e.bits) * 8 {
				if e.bits[i/8]&(0x80>>(i%8)) == 0 {
					continue
				}
				if i >= n {
					s.dropPeer(p, fmt.Errorf("%w: piece %d declared of %d", errProtocol, i, n))
					break
				}
				has.Set(i)
			}
			if !p.closed {
				s.setPieces(p, has)
			}
		}
	}
	s.startWebSeeds()
	s.fillAll()
}

// metaFailure describes what the metadata phase tried, around cause (a
// caller's context that ended first).
func (s *state) metaFailure(cause error) error {
	f := s.fetch
	if f == nil {
		return cause
	}
	have, total := f.fetcher.Progress()
	var b strings.Builder
	fmt.Fprintf(&b, "magnet %s: no metadata after %v: %d peer addresses known", s.t.mi.InfoHash, time.Since(f.started).Round(time.Second), len(s.known))
	if len(s.learned) > 0 {
		srcs := make([]string, 0, len(s.learned))
		for src, n := range s.learned {
			srcs = append(srcs, fmt.Sprintf("%s %d", src, n))
		}
		slices.Sort(srcs)
		fmt.Fprintf(&b, " (%s)", strings.Join(srcs, ", "))
	}
	fmt.Fprintf(&b, ", %d handshaken, %d connected now, %d offered metadata, %d banned", f.hands, len(s.peers), f.offers, len(s.banned))
	if total > 0 {
		fmt.Fprintf(&b, ", %d of %d metadata pieces in", have, total)
	}
	switch a := s.announcer; {
	case a == nil:
		b.WriteString("; no trackers")
	default:
		ok, last := s.trackerOK, s.trackerErr
		if last != nil {
			fmt.Fprintf(&b, "; %d tracker announces worked, last tracker error: %v", ok, last)
		} else {
			fmt.Fprintf(&b, "; %d tracker announces worked", ok)
		}
	}
	switch {
	case s.t.cfg.Finder == nil:
		b.WriteString("; no DHT")
	case s.lookup.lastErr != nil:
		fmt.Fprintf(&b, "; %d DHT lookups, last error: %v", s.lookup.runs, s.lookup.lastErr)
	default:
		fmt.Fprintf(&b, "; %d DHT lookups", s.lookup.runs)
	}
	return fmt.Errorf("%s: %w", b.String(), cause)
}
