package picker

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"btfs/bitfield"
)

// Mode says which pieces the picker fetches at all.
type Mode uint8

const (
	// FetchAll downloads the whole torrent: wanted pieces first, then the
	// rest rarest-first. The zero value, the default.
	FetchAll Mode = iota
	// FetchReads downloads only what readers want (SetWants); nothing else
	// is ever picked. For a mount that should not fill the disk.
	FetchReads
)

func (m Mode) String() string {
	switch m {
	case FetchAll:
		return "fetch-all"
	case FetchReads:
		return "fetch-reads"
	}
	return "mode(?)"
}

// wordPieces is how many pieces one bitfield word holds.
const wordPieces = 64

// randomFirstPieces is how many pieces must be verified before rarest-first
// replaces random-first: until then a new client has nothing to trade, and
// a random piece (likely one many peers have, so it arrives fast) gets it
// something sooner than the rarest piece would.
const randomFirstPieces = 4

// PieceState is where a piece stands in its download; see invariant 1.
// The storagewrapper owns it (its blocks handed out, its hash checked)
// and reports it in these terms; the picker keeps the copy Next needs,
// brought up to date by Sync.
type PieceState uint8

const (
	// PieceIdle: not verified and no block handed out.
	PieceIdle PieceState = iota
	// PieceStarted: some blocks handed out, some not.
	PieceStarted
	// PieceFull: every block handed out (or the piece is set aside:
	// being hashed, adopted, or downloaded by another process); pickable
	// again only in endgame.
	PieceFull
	// PieceVerified: the hash checked; never picked.
	PieceVerified
)

// The picker's own short names.
type pieceState = PieceState

const (
	idle     = PieceIdle
	started  = PieceStarted
	full     = PieceFull
	verified = PieceVerified
)

// pickable reports whether Next may return a piece in this state outside
// endgame.
func (s pieceState) pickable() bool { return s == idle || s == started }

// Picker chooses pieces. Create it with New; it is owned by one goroutine.
type Picker struct {
	// pieceLen is the nominal piece length, for mapping wants to pieces.
	pieceLen int64
	// totalLen is the torrent's total length; the last piece may be short.
	totalLen int64
	// n is the number of pieces.
	n int
	// rng breaks ties and picks random pieces; injected for deterministic tests.
	rng *rand.Rand
	// mode is FetchAll or FetchReads.
	mode Mode

	// state is each piece's state (invariant 1).
	state []pieceState
	// pickable has the idle and started pieces, for word-wise scans of
	// wanted ranges and random picks.
	pickable *bitfield.Bitfield
	// missing has every piece not verified, for Interesting.
	missing *bitfield.Bitfield
	// full has the fully requested pieces, for word-wise endgame scans of
	// wanted ranges.
	full *bitfield.Bitfield
	// bumped has the pieces that failed a hash check since last verified.
	bumped *bitfield.Bitfield
	// startedSet is the started pieces, for step 3 of Next.
	startedSet indexSet
	// fullSet is the full pieces, for random endgame picks.
	fullSet indexSet
	// flightPos is each piece's position in startedSet or fullSet (a piece
	// is in at most one of them, as its state says); -1 when in neither.
	flightPos []int32
	// verifiedCount is the number of verified pieces.
	verifiedCount int

	// avail is, per piece, how many registered partial peers have it.
	avail []int32
	// seeds is how many have-all peers are registered.
	seeds int
	// levels are the availability buckets: levels[k] holds the pickable
	// pieces with avail k (invariant 2).
	levels []level
	// levelPos is each pickable piece's position inside its bucket part.
	levelPos []int32
	// wordMin is, per 64-piece word, a lower bound of the ranks of its
	// pickable pieces (invariant 8), for scanPeer to skip words.
	wordMin []int32
	// scanBudget is how many misses nextRarest accepts in the buckets
	// before it scans the peer's bitfield instead.
	scanBudget int

	// wants holds the readers' wants as piece ranges.
	wants wantSet

	// egDirty is set by every change that can change Endgame's answer in
	// FetchReads mode, where computing it walks the wanted ranges.
	egDirty bool
	// egCached is Endgame's last answer in FetchReads mode.
	egCached bool
}

// ErrBadGeometry is wrapped by New when the piece length or total length
// cannot describe a torrent.
var ErrBadGeometry = errors.New("bad torrent geometry")

// New returns a picker for a torrent of totalLen bytes in pieces of
// pieceLen bytes (the last piece may be shorter), in FetchAll mode, with no
// peers, no wants and nothing verified. rng supplies all randomness.
func New(pieceLen, totalLen int64, rng *rand.Rand) (*Picker, error) {
	if pieceLen <= 0 {
		return nil, fmt.Errorf("picker: piece length %d: %w", pieceLen, ErrBadGeometry)
	}
	if totalLen < 0 {
		return nil, fmt.Errorf("picker: total length %d: %w", totalLen, ErrBadGeometry)
	}
	if rng == nil {
		return nil, errors.New("picker: nil random source")
	}
	n64 := totalLen / pieceLen
	if totalLen%pieceLen != 0 {
		n64++
	}
	if n64 > math.MaxInt32-1 {
		return nil, fmt.Errorf("picker: %d pieces: %w", n64, ErrBadGeometry)
	}
	n := int(n64)
	p := &Picker{
		pieceLen:   pieceLen,
		totalLen:   totalLen,
		n:          n,
		rng:        rng,
		state:      make([]pieceState, n),
		pickable:   bitfield.New(n),
		missing:    bitfield.New(n),
		full:       bitfield.New(n),
		bumped:     bitfield.New(n),
		flightPos:  make([]int32, n),
		avail:      make([]int32, n),
		levels:     make([]level, 1, 8),
		levelPos:   make([]int32, n),
		wordMin:    make([]int32, (n+wordPieces-1)/wordPieces),
		scanBudget: 64 + n/256,
		egDirty:    true,
	}
	p.pickable.SetAll()
	p.missing.SetAll()
	all := make([]int32, n)
	for i := range n {
		all[i] = int32(i)
		p.levelPos[i] = int32(i)
		p.flightPos[i] = -1
	}
	p.levels[0].parts[0] = all
	return p, nil
}

// NumPieces is the number of pieces.
func (p *Picker) NumPieces() int { return p.n }

// IsVerified reports whether piece i is verified (as last reported).
func (p *Picker) IsVerified(i int) bool { return p.valid(i) && p.state[i] == verified }

// NumVerified is the number of verified pieces.
func (p *Picker) NumVerified() int { return p.verifiedCount }

// Mode returns the current mode.
func (p *Picker) Mode() Mode { return p.mode }

// SetMode switches between FetchAll and FetchReads; unknown modes are
// treated as FetchReads (the one that fetches less).
func (p *Picker) SetMode(m Mode) {
	if m != FetchAll {
		m = FetchReads
	}
	p.mode = m
	p.egDirty = true
}

// valid reports whether i is a piece index. Indices from the wire are
// checked by the codec; the picker ignores bad ones rather than panic the
// torrent's goroutine.
func (p *Picker) valid(i int) bool { return uint(i) < uint(p.n) }
