// Package picker decides which piece to request next from a given peer. It is
// the PiecePicker of the original client (with the seed's ranged picker
// folded in): pieces under a blocked read first, by deadline; then the
// readahead windows; then pieces already started; then, until a few pieces
// are verified, a random piece; then rarest-first with random tie-breaks; and
// in endgame, duplicate requests for pieces already fully requested.
//
// It only chooses pieces. The storagewrapper hands out blocks and knows which
// ones are missing; the engine reports what the storagewrapper said back to
// the picker (Started, FullyRequested, Unrequested, Verified, Failed,
// Unverified) and what the peers said (AddPeer, Have, AddSeed, RemovePeer,
// RemoveSeed). Readers set their wants (SetWants).
//
// # Ownership
//
// A Picker is pure and single-owner: no I/O, no goroutines, no locks, no
// clock. The torrent's goroutine owns it and drives it with events; nothing
// else may touch it. Deadlines are only compared with each other, so the
// picker never needs the current time. Randomness comes from the *rand.Rand
// given to New, so a test with a seeded source sees the same choices every
// run.
//
// # Invariants
//
// These hold between any two method calls; the randomized test in this
// package checks them against a naive reference implementation.
//
//  1. Every piece is in exactly one state: idle (nothing handed out), started
//     (some blocks handed out), full (every block handed out) or verified.
//     "Pickable" means idle or started.
//  2. A piece is in the availability buckets if and only if it is pickable.
//     Its bucket is avail[i], the number of registered partial peers that
//     have it; within the bucket it is in the bumped part if and only if it
//     failed a hash check since it was last verified.
//  3. Peers that have everything (BEP 6 have-all) are counted in seeds and
//     not in avail: a seed adds one to every piece, which changes no
//     ordering, so joining and leaving seeds cost O(1). The availability of
//     a piece is avail[i] + seeds.
//  4. The pickable bitfield is exactly the idle and started pieces; the full
//     bitfield and the full set are exactly the full pieces; the started set
//     is exactly the started pieces; verifiedCount counts verified pieces.
//  5. Wants are kept as disjoint, non-empty piece ranges with a priority
//     above None, sorted by index (for Priority) and, separately, by
//     urgency: priority descending, then deadline (a zero deadline last),
//     then index (for Next). A piece covered by several wants takes the
//     highest priority and, within it, the earliest deadline.
//  6. Outside endgame Next returns only pickable pieces the peer has; in
//     endgame it returns only full pieces the peer has that the mode wants.
//     It never returns a verified piece.
//  7. Next does not allocate and does not scan all pieces: wanted ranges are
//     scanned a word (64 pieces) at a time, started pieces come from a small
//     set, and rarest-first walks the buckets from the rarest up, starting
//     each at a random position. A partial peer that lacks the rare pieces
//     would make that walk long, so after a budget of misses the walk
//     switches to a word-wise scan of the peer's bitfield (see nextRarest).
//  8. For every word of 64 pieces, wordMin is at most the rank (2*avail, plus
//     one if bumped) of each pickable piece in it. Changes that lower a rank
//     or make a piece pickable lower the bound at once; changes that raise
//     ranks leave it loose, and scanPeer makes it exact when it looks at the
//     word. A loose bound costs time, never a wrong answer.
//
// # Order of Next
//
//  1. Now-priority pieces by earliest deadline, then index.
//  2. Readahead-priority pieces by earliest deadline, then index. Readers
//     give all of one window the same deadline, so within a window this is
//     index order, and the window with the earlier deadline comes first.
//  3. (FetchAll) started pieces, to finish what is half done.
//  4. (FetchAll) while fewer than 4 pieces are verified, a random piece, so
//     that a new peer quickly has something to trade.
//  5. (FetchAll) rarest-first: the lowest availability, ties broken at
//     random; a piece that failed its hash check goes behind the pieces of
//     equal availability (the seed's PiecePicker.bump).
//  6. In endgame (every missing piece the mode wants is fully requested), a
//     fully requested piece the peer has: wanted ones by urgency first, then
//     (FetchAll) a random one, for a duplicate request.
//
// In FetchReads mode only 1, 2 and 6 apply: nothing a reader does not want is
// ever picked.
package picker
