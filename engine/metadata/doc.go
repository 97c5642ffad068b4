// Package metadata is BEP 9's metadata exchange without the wire: the
// state of fetching the info dictionary of a magnet link from peers
// (Fetcher) and of serving ours (Server). It does no I/O, starts no
// goroutines and takes no locks; the torrent's loop owns one Fetcher and
// passes the time in, so every decision is a function of the calls made,
// and the tests drive it call by call.
//
// # How a fetch goes
//
// Peers announce metadata_size in their extension handshake (SetSize).
// The Fetcher elects one size, asks peers that announced it for 16 KiB
// pieces, at most PeerPipeline at a time each, spread over them
// (NextRequest), files what comes back (Received), and when every piece
// is in, checks the SHA-1 of the whole against the info-hash. A request
// unanswered after RequestTimeout is asked of another peer; a peer that
// rejects is left alone for RejectBackoff.
//
// # Who is lying
//
// A peer can lie about the size or send bytes that are not the info
// dictionary. Nobody can tell a bad piece from a good one until the
// whole hashes, so:
//   - A size above the cap, or a peer that changes its size, is refused
//     (SetSize's error) and never asked.
//   - Sizes are elected, not trusted: the first size announced wins ties,
//     a size with more live supporters wins while no piece has arrived,
//     and a size whose supporters are all gone, banned, stalled or
//     rejecting gives way to the next. A liar that announced first therefore costs time,
//     never the fetch.
//   - A hash failure with one contributor proves that peer bad: it is
//     banned. With several contributors nobody is proven: the failed
//     pieces and their senders are kept, and the next attempts are each
//     fetched from a single peer (so each failure proves its sender bad).
//     When one succeeds, every earlier contributor whose piece differs
//     from the verified bytes is banned; the honest ones never are. This
//     is smart ban, as the engine does for pieces (engine/smartban.go).
//   - A piece of the wrong length, from a peer that announced the size we
//     fetch, is a lie about the size: banned.
//
// Banned peers are queued for TakeBanned, which the engine drains after
// each call to disconnect and ban them.
package metadata
