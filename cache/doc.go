// Package cache is the piece cache that btfs processes on one machine share:
// the seed's share-downloading (each process wrote finished pieces as
// ../pieceN and the others looked for them before sending HAVE) made into a
// protocol in which the processes also split the downloading, so that the
// swarm sends each piece to the machine once.
//
// # Layout
//
// One directory per torrent, <cache-dir>/<infohash-hex>/:
//
//	info                  the info dictionary (SaveInfo)
//	pieces/000123         verified piece 123; appears only by rename
//	partial/000123.O.part piece 123 being downloaded by owner O
//	claims/.owner.O       owner O's file ("O\n"; mtime: O's last progress)
//	claims/000123         owner O is downloading piece 123 (a link to O's file)
//	urgent/000123.O       a reader of owner O waits for piece 123 (a link to O's file)
//	pins                  byte i read-locked (OFD lock) by each process using piece i
//	lock                  flock(2): eviction, capped publish, stale claims, cleaning
//
// An owner O is "NS-PID-START-NONCE" (see owner): a process's PID
// namespace, pid and start time tell whether it still runs; the nonce tells
// apart the Stores of one process.
//
// The pieces are a storagewrapper.DirStore with a partial tag per owner: a
// piece file appears only by the atomic rename of a complete, verified,
// fsynced partial file, followed by an fsync of the directory; partial data
// never has a final name. Two processes that publish the same piece rename
// two complete verified files: the last rename wins, readers of the first
// keep reading it, and nobody sees an error.
//
// # Claims: splitting the work
//
// Before the storagewrapper starts a piece (NewRequest) it claims it
// (Claim): the claim file is created exclusively, as a hard link to the
// owner's file. link(2) fails with EEXIST as O_CREAT|O_EXCL does, the
// claim appears with its content (never half-written), and it costs a
// fraction of creating a file (8 µs against 560 µs on this machine's
// ext4); where links do not work the claim is a file created with O_EXCL.
// A claim that exists already is taken over when it is stale — its owner
// is dead (no such pid, a different start time, or a zombie; checked only
// within our PID namespace) or it made no progress for the claim time-out
// (the owner bumps the mtime of its file, which all its claims share, as
// blocks arrive: a live owner that receives nothing at all loses its
// claims; one stuck on a single piece sorts it out itself, its engine
// re-requesting blocks that do not come) — under the directory lock, and
// only if it is still the same claim. A live claim, or a piece already published,
// is refused: the storagewrapper answers RequestClaimedElsewhere and the
// engine sets the piece aside. It comes back when the piece is published
// (inotify sees the rename, Run adopts it: Host.Adopt hashes it once in
// this process, and the engine announces it with HAVE) or when the claim
// ends without a publish (the file removed, or found stale by Run, which
// checks the claims of the pieces our readers wait for four times a
// second): Host.ClaimEnded, and the engine requests it again, claiming it
// in turn. A claim is released (its file removed, if still ours) when its
// piece leaves flight: published, failed, abandoned, or at Close.
//
// # Urgency across processes
//
// A reader of process A that waits for a piece B has claimed must not
// wait behind B's background work. A's readers pin the pieces they wait for
// (Pin); a pinned piece that A was refused gets a marker urgent/N.A. B
// watches the markers: for a piece B has claimed and some other process
// marked, B registers a picker.Now want in its own storagewrapper, so B's
// engine fetches it first (and re-requests its late blocks from faster
// peers), until the marker goes or B's claim ends, and acknowledges the
// marker at once by moving its claim's mtime past it. A removes its marker
// when its readers unpin the piece. B keeps the claim: taking it from a
// live B would waste B's blocks in flight, and the claim time-out still
// covers a B that is stuck. A B that does not acknowledge a marker within
// a second (frozen by SIGSTOP or a debugger, hung) loses the claim to A at
// once: A's reader does not wait the whole claim time-out.
//
// # Seeing the others' pieces
//
// Run watches pieces/, claims/ and urgent/ with inotify (golang.org/x/sys/
// unix), rescans them every poll interval (everything when inotify is
// unavailable), and the storagewrapper checks the store on every read miss.
// A piece published by another process is hashed once here before it is
// served (Host.Adopt; a damaged file is removed and the piece fetched
// again); a piece file that disappears (evicted, removed) is unverified
// here (Host.Unverify): the engine stops serving it and readers fetch it
// again on demand; a piece file written in place (by hand) is unverified
// and hashed again.
//
// # Size cap
//
// With Options.MaxBytes, pieces are evicted least recently read first:
// readers pin pieces (an OFD read lock on byte i of the pins file, taken on
// the first pin of a piece in this process and dropped on the last unpin;
// the kernel drops it when the process dies), each pin marks the piece
// read, and Run writes the read times into the piece files' mtimes in
// batches. Eviction runs under the directory lock: it sorts the piece
// files by mtime and removes each only after taking the OFD write lock of
// its byte without waiting — a piece pinned by any process (this one
// included: the probe is an open file description of its own) is never
// removed. A process publishing under a cap makes room under the directory
// lock and holds it across the rename, so that processes publishing at
// once cannot overshoot the cap together; evictions go below the cap by a
// slack (an eighth, at most eight pieces) so that they do not run for every
// piece. Partial files are outside the cap.
//
// # Start and crash
//
// Open cleans what dead processes left: stale claims, their owner files,
// partial files and urgency markers, and temp files of the metainfo. The pieces are
// trusted only as far as they verify (storagewrapper.Resume hashes each one
// before it is served).
//
// # Locks
//
// In this order, never the other way: claimMu (Claim, Release; file I/O
// under it) → dirMu with the flock (lockDir) → the eviction probe's byte
// locks (never waited for) → pinMu (with the pin's byte lock, which waits
// only for an eviction's unlink) → mu (in-memory state only). No lock of
// the Store is held while it calls the Host, except claimMu around
// Host.Want and its release (the storagewrapper never calls the Store with
// its own lock held, so this cannot cycle).
package cache
