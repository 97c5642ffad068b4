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
//	data/NAME[/path...]   the torrent's own files, sparse, written in place
//	verified              the record: which pieces are verified (record.go)
//	reads                 each piece's last read (uint64 ns), for eviction
//	claims/.owner.O       owner O's file ("O\n"; mtime: O's last progress)
//	claims/000123         owner O is downloading piece 123 (a link to O's file)
//	urgent/000123.O       a reader of owner O waits for piece 123 (a link to O's file)
//	pins                  byte i read-locked (OFD lock) by each process using piece i
//	lock                  flock(2): marks, eviction, stale claims, cleaning
//
// An owner O is "NS-PID-START-NONCE" (see owner): a process's PID
// namespace, pid and start time tell whether it still runs; the nonce tells
// apart the Stores of one process.
//
// # The data and the record
//
// Blocks are written in place into the torrent's files (a
// storagewrapper.FileStore under data/), so that a complete file is a file
// (the kernel can read it through FUSE passthrough, -keep can move it) and
// no byte is copied to be published. Bytes alone prove nothing: what makes
// a piece count is its mark in the record, shared by every process. A
// piece is hashed once, by the process that downloaded it (or, for a
// suspect piece, by the first to adopt it); it is marked only after its
// files are fdatasync'ed, under the directory lock; every other process
// trusts the mark (storagewrapper.Verified: adopted without a hash).
// Bytes under no mark are never served, never hashed on trust, and
// punched out (fallocate PUNCH_HOLE) when the claim that wrote them ends
// without a mark, when they are discarded, and at Open for what dead
// processes left: a crash at any moment leaves at worst bytes under no
// mark.
//
// Each slot of the record (a piece's state and generation, a file's size
// and mtime) is one pwrite(2) with its own CRC-32C: a torn slot reads as
// unmarked. Every change of a piece's state bumps its generation; a read
// of a marked piece checks the slot again afterwards and fails (the
// storagewrapper fetches the piece again) if it changed: eviction clears
// the mark before it punches the hole, so no read serves a hole as data.
//
// A file changed behind btfs's back is caught by its stamp: btfs stamps a
// file's size and mtime whenever it leaves it (a mark, the end of a claim,
// a discard, an eviction), under the directory lock. Open and each rescan
// compare them; a file that differs while no process holds a claim on any
// of its pieces turns its marked pieces suspect: unverified everywhere,
// hashed again before they are served, marked again if right. A write to
// a marked piece by btfs itself (a late block of a piece another process
// finished) is dropped.
//
// A cache directory in the layout of older btfs (pieces/, partial/) is
// removed at Open with one line in the log: its pieces were never
// recorded, so nothing of it is read.
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
// only if it is still the same claim. A live claim, or a piece already marked,
// is refused: the storagewrapper answers RequestClaimedElsewhere and the
// engine sets the piece aside. It comes back when the piece is marked
// (inotify sees the record change, Run adopts it: Host.Adopt trusts the
// mark, and the engine announces it with HAVE) or when the claim
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
// Run watches the record, claims/ and urgent/ with inotify (golang.org/x/
// sys/unix; one instance and one reader goroutine per process, shared by
// every Store, so that a library of many torrents stays within the
// kernel's few instances per user), rescans them every poll interval
// (everything when inotify is unavailable), and the storagewrapper checks
// the store on every read miss. Adopt workers exist only while pieces wait
// for adoption. A scan compares a snapshot of the record with what the
// host has now: a had piece that the snapshot shows unmarked is read again
// before it counts as gone (it may have been marked, and adopted, since).
// A piece marked by another process is adopted without a hash
// (Host.Adopt); a piece unmarked (evicted, discarded) is unverified here
// (Host.Unverify): the engine stops serving it and readers fetch it again
// on demand; a suspect piece is unverified and hashed again.
//
// # Size cap
//
// With Options.MaxBytes, pieces are evicted least recently read first:
// readers pin pieces (an OFD read lock on byte i of the pins file, taken on
// the first pin of a piece in this process and dropped on the last unpin;
// the kernel drops it when the process dies), each pin marks the piece
// read, and Run writes the read times into the reads file in batches (a
// piece marked counts as read then). Eviction runs under the directory
// lock: it sorts the marked pieces by read time and evicts each only after
// taking the OFD write lock of its byte without waiting — a piece pinned by
// any process (this one included: the probe is an open file description
// of its own) is never evicted. Evicting clears the mark, then punches the
// hole. A process marking under a cap makes room under the same lock, so
// that processes marking at once cannot overshoot the cap together;
// evictions go below the cap by a slack (an eighth, at most eight pieces)
// so that they do not run for every piece. Bytes in flight are outside the
// cap.
//
// # Start and crash
//
// Open cleans what dead processes left: stale claims, their owner files,
// urgency markers, probe files and temp files of the metainfo; it checks
// the files' stamps and punches out the unmarked, unclaimed pieces. Marks
// are trusted (their bytes were durable before they were written); a
// piece whose file changed is hashed before it is served.
//
// # Locks
//
// In this order, never the other way: claimMu (Claim, Release; file I/O
// under it) → dirMu with the flock (lockDir; held to write the record) → the eviction probe's byte
// locks (never waited for) → pinMu (with the pin's byte lock, which waits
// only for an eviction's unlink) → mu (in-memory state only). No lock of
// the Store is held while it calls the Host, except claimMu around
// Host.Want and its release (the storagewrapper never calls the Store with
// its own lock held, so this cannot cycle).
package cache
