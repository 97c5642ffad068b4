package metadata

import (
	"errors"
	"fmt"
	"time"

	"btfs/engine/wire"
	"btfs/metainfo"
)

// Tuning of a fetch.
const (
	// PeerPipeline is how many piece requests one peer may have
	// outstanding: libtorrent's number. Small, so that the pieces of a
	// multi-piece dictionary spread over peers instead of all going to
	// the first one asked.
	PeerPipeline = 2
	// RequestTimeout is how long a request may stay unanswered before its
	// piece is asked of another peer (the first request stays valid: its
	// answer is still taken if it comes first).
	RequestTimeout = 15 * time.Second
	// RejectBackoff is how long a peer that rejected a request is not
	// asked again: a reject means it does not have the metadata (yet) or
	// limits how much it serves.
	RejectBackoff = 30 * time.Second
)

// Errors of a Fetcher. None of them means "close the connection" by
// itself: peers that must go are the ones TakeBanned returns.
var (
	// ErrTooLarge: SetSize with a size over the cap. The peer is never
	// asked.
	ErrTooLarge = errors.New("metadata: metadata_size over the cap")
	// ErrBadSize: SetSize with a size below 1. The peer is never asked.
	ErrBadSize = errors.New("metadata: bad metadata_size")
	// ErrSizeMismatch: SetSize with a size other than the elected one (the
	// peer is kept as a supporter of its size, in case ours is the lie),
	// or other than the peer's own earlier one (the peer is never asked
	// again).
	ErrSizeMismatch = errors.New("metadata: metadata_size differs")
	// ErrUnrequested: Received or Rejected for a piece we have not asked
	// of that peer in the current attempt (out of range, never asked, or
	// asked before a restart). The data is dropped.
	ErrUnrequested = errors.New("metadata: piece not requested of this peer")
	// ErrBadLength: Received with data whose length is not the piece's
	// under the size the peer announced. The peer is banned.
	ErrBadLength = errors.New("metadata: piece of the wrong length")
	// ErrBanned: a call about a peer the Fetcher has banned.
	ErrBanned = errors.New("metadata: peer is banned")
	// ErrHashMismatch is wrapped by *HashError.
	ErrHashMismatch = errors.New("metadata: info dictionary does not hash to the info-hash")
)

// HashError reports a complete info dictionary whose SHA-1 is not the
// info-hash. Everything fetched was discarded and the fetch restarted.
type HashError struct {
	// InfoHash is the hash the dictionary should have had.
	InfoHash metainfo.Hash
	// Size is the size that was fetched.
	Size int64
	// Contributors are the peers whose pieces made up the dictionary.
	Contributors []string
	// Banned are the contributors proven bad (a sole contributor); they
	// are also queued for TakeBanned. Empty when several contributed:
	// smart ban decides later.
	Banned []string
}

func (e *HashError) Error() string {
	return fmt.Sprintf("metadata: %d bytes from %v do not hash to %s (banned: %v)", e.Size, e.Contributors, e.InfoHash, e.Banned)
}

// Is makes errors.Is(err, ErrHashMismatch) true.
func (e *HashError) Is(target error) bool { return target == ErrHashMismatch }

// Fetcher is the state of fetching one info dictionary. The zero value is
// not usable: use NewFetcher. Not safe for concurrent use: one owner (the
// torrent's loop) calls it.
type Fetcher struct {
	// infoHash is what the dictionary must hash to.
	infoHash metainfo.Hash
	// maxSize caps the sizes accepted.
	maxSize int64
	// peers are the peers that announced a size (or were refused), by the
	// engine's name for them.
	peers map[string]*peer
	// banned are the peers proven to have lied; they stay banned for the
	// Fetcher's life, across PeerGone.
	banned map[string]bool
	// toBan are the banned peers not yet returned by TakeBanned.
	toBan []string
	// order counts announcements, to give each peer its rank.
	order int
	// size is the elected size, 0 while none.
	size int64
	// pieces are the current attempt's pieces; len = pieces of size.
	pieces []piece
	// received counts the pieces of the current attempt that are in.
	received int
	// single is true after a failure with several contributors: each
	// attempt is then fetched from one peer, owner.
	single bool
	// owner is the peer the current attempt is fetched from in single
	// mode; "" until a peer asks.
	owner string
	// suspect is the failed several-contributor attempt, kept for smart
	// ban; nil when there is none.
	suspect []piece
	// result is the verified dictionary; nil until done.
	result []byte
}

// peer is what the Fetcher knows of one peer.
type peer struct {
	// size is the size it announced; 0 if refused.
	size int64
	// rank orders announcements: lower announced earlier.
	rank int
	// refused is true for a peer never to be asked: an oversized, bad or
	// changed size.
	refused bool
	// stalled is set when it lets a request time out or rejects one, and
	// cleared when it delivers a piece: a stalled peer votes for its size
	// only when no supporter is live, and is asked only when nobody else
	// can be. It survives restarts, so that a peer that fails every
	// attempt cannot win the election back each time.
	stalled bool
	// backoffUntil is when a peer that rejected may be asked again.
	backoffUntil time.Time
}

// piece is one 16 KiB piece of the current (or a failed) attempt.
type piece struct {
	// data is the piece's bytes once received, nil before.
	data []byte
	// from is the peer that sent data.
	from string
	// reqs are the outstanding requests for it, oldest first.
	reqs []request
}

// request is one outstanding request for a piece.
type request struct {
	// peer it was asked of.
	peer string
	// at is when it was asked.
	at time.Time
}

// NewFetcher starts fetching the info dictionary of infoHash, refusing
// sizes over maxSize (0 or less means wire.DefaultMaxMetadataSize, 16 MiB).
func NewFetcher(infoHash metainfo.Hash, maxSize int64) *Fetcher {
	if maxSize <= 0 {
		maxSize = wire.DefaultMaxMetadataSize
	}
	return &Fetcher{
		infoHash: infoHash,
		maxSize:  maxSize,
		peers:    make(map[string]*peer),
		banned:   make(map[string]bool),
	}
}

// SetSize records the metadata_size a peer announced in its extension
// handshake. The first size announced is elected unless a better-supported
// one comes before any piece arrives (see the package doc). It returns an
// error wrapping ErrTooLarge or ErrBadSize (the peer is never asked),
// ErrSizeMismatch (it differs from the elected size, or from the peer's own
// earlier announcement) or ErrBanned. After the fetch is done, a size other
// than the verified one is ErrSizeMismatch and nothing else happens.
func (f *Fetcher) SetSize(id string, size int64) error {
	if f.banned[id] {
		return fmt.Errorf("peer %s: %w", id, ErrBanned)
	}
	if f.result != nil {
		if size != int64(len(f.result)) {
			return fmt.Errorf("peer %s: metadata_size %d, the verified dictionary has %d bytes: %w", id, size, len(f.result), ErrSizeMismatch)
		}
		return nil
	}
	p := f.peers[id]
	if p == nil {
		f.order++
		p = &peer{rank: f.order}
		f.peers[id] = p
	}
	switch {
	case p.refused:
		return fmt.Errorf("peer %s: metadata_size %d from a peer refused before: %w", id, size, ErrSizeMismatch)
	case size > f.maxSize:
		f.refuse(id, p)
		return fmt.Errorf("peer %s: metadata_size %d, cap %d: %w", id, size, f.maxSize, ErrTooLarge)
	case size < 1:
		f.refuse(id, p)
		return fmt.Errorf("peer %s: metadata_size %d: %w", id, size, ErrBadSize)
	case p.size != 0 && p.size != size:
		f.refuse(id, p)
		return fmt.Errorf("peer %s: metadata_size changed from %d to %d: %w", id, p.size, size, ErrSizeMismatch)
	}
	p.size = size
	f.elect()
	if size != f.size {
		return fmt.Errorf("peer %s: metadata_size %d, fetching %d: %w", id, size, f.size, ErrSizeMismatch)
	}
	return nil
}

// refuse marks a peer never to be asked and withdraws its requests.
func (f *Fetcher) refuse(id string, p *peer) {
	p.refused = true
	p.size = 0
	f.withdraw(id)
	f.elect()
}

// PeerGone forgets a disconnected peer: its requests are withdrawn, so
// their pieces go to others at once, and its size no longer votes. A
// banned peer stays banned.
func (f *Fetcher) PeerGone(id string) {
	if _, ok := f.peers[id]; !ok {
		return
	}
	f.withdraw(id)
	delete(f.peers, id)
	f.elect()
}

// withdraw removes id's outstanding requests; in single mode, an owner
// that withdraws gives the attempt up (its pieces are dropped, so that the
// next owner's attempt is again all from one peer).
func (f *Fetcher) withdraw(id string) {
	for i := range f.pieces {
		f.pieces[i].reqs = dropRequests(f.pieces[i].reqs, id)
	}
	if f.single && f.owner == id {
		f.restart()
	}
}

// dropRequests removes the requests of one peer, in place.
func dropRequests(reqs []request, id string) []request {
	out := reqs[:0]
	for _, r := range reqs {
		if r.peer != id {
			out = append(out, r)
		}
	}
	return out
}

// ban bans a peer for good and queues it for TakeBanned. Its requests are
// withdrawn and the pieces it sent in the current attempt dropped: they
// are likely as bad as the one that gave it away. The caller re-runs the
// election.
func (f *Fetcher) ban(id string) {
	if f.banned[id] {
		return
	}
	f.banned[id] = true
	f.toBan = append(f.toBan, id)
	f.withdraw(id)
	for i := range f.pieces {
		if pc := &f.pieces[i]; pc.data != nil && pc.from == id {
			pc.data, pc.from = nil, ""
			f.received--
		}
	}
	delete(f.peers, id)
}

// TakeBanned returns the peers banned since the last call, in the order
// they were banned: the engine disconnects and bans each.
func (f *Fetcher) TakeBanned() []string {
	b := f.toBan
	f.toBan = nil
	return b
}

// Banned reports whether the Fetcher has banned the peer.
func (f *Fetcher) Banned(id string) bool { return f.banned[id] }

// Done reports whether the dictionary has been fetched and verified.
func (f *Fetcher) Done() bool { return f.result != nil }

// Result returns the verified info dictionary (for metainfo.ParseInfo and
// the cache), or nil before Done. The caller must not modify it.
func (f *Fetcher) Result() []byte { return f.result }

// Size returns the elected size: the verified size once done, 0 while no
// peer has announced a usable one.
func (f *Fetcher) Size() int64 {
	if f.result != nil {
		return int64(len(f.result))
	}
	return f.size
}

// Progress returns how many pieces of the current attempt are in, of how
// many, for a status line.
func (f *Fetcher) Progress() (have, total int) {
	if f.result != nil {
		n := wire.MetadataPieces(int64(len(f.result)))
		return n, n
	}
	return f.received, len(f.pieces)
}
