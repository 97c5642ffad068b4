// Package storagewrapper is the seed's StorageWrapper made safe for
// concurrent readers: per-piece block bookkeeping (NewRequest hands out the
// lowest missing block, PieceCameIn files one), SHA-1 verification, and a
// ReadAt that waits until every piece under a range is verified.
//
// # The data path
//
// A peer goroutine asks NewRequest for a block, sends REQUEST, and hands the
// PIECE payload to PieceCameIn in its own goroutine: the bytes go straight
// into the Store's partial data for that piece, never through a channel and
// never into a buffer the wrapper keeps. The goroutine whose block completes
// a piece reads the partial data back, hashes it, and Publishes it; only then
// is the piece marked verified and are its waiting readers woken. RAM use is
// therefore bounded by Config.MaxInFlight (block states per piece in flight)
// and the hashing buffers, never by the torrent's size.
//
// # Concurrency
//
// Wrapper.mu is the one mutex. It guards the verified set and counts, the
// pieces in flight (their block states), the pieces being adopted, the
// per-piece waiter channels, the wants, the claims held and refused, the
// changes for the engine and the closed flag. It is never held across Store
// I/O, hashing, a channel send that can block, or a call into the caller's
// code (the resume progress callback): every method takes it, copies or
// changes bookkeeping, and releases it before touching the Store (Claim,
// Release and Pin of a shared Store included). Store implementations have
// their own locks and never call back into the Wrapper from a Store method,
// so the lock order is simply Wrapper.mu → (nothing): no other lock is ever
// taken while it is held.
//
// # A Store shared between processes
//
// A Store may be shared with other processes (package cache): it then
// implements Claimer, and NewRequest claims a piece before it starts it
// (RequestClaimedElsewhere when another process has); and Pinner, and
// ReadAt and Adopt pin the pieces they use so that the Store does not evict
// them. Pieces change state outside the engine's own downloads — adopted
// (another process published them), unverified (their file left the
// Store), set aside for a claim elsewhere or released by its end — and the
// engine drains those changes with TakeChanges when Kick fires. A reader's
// miss first looks in the Store (another process may just have published
// the piece), and a read that finds a verified piece gone fetches it again
// instead of failing.
//
// # A full or failing disk
//
// The Store's health has one owner, the Wrapper (health.go): a write that
// fails for want of space first makes room (Evicter: the shared cache
// evicts least recently read pieces no reader holds; then the partial
// pieces no reader waits for are dropped); any other failure of the disk,
// or no room at all, puts the Wrapper in a failed state in which
// NewRequest hands out nothing, waiting readers of missing pieces fail
// with the Store's error, and a probe (Prober) retries with backoff until
// the Store takes data again. The engine follows it through Health and
// Kick. MakeRoom may call the Store's Host (Unverify) for the pieces it
// evicts: it is called without mu held.
//
// Exactly one goroutine hashes a completed piece: the one whose block moved
// the piece's received count to its block count (the count changes under
// mu). While a piece is hashed, published, discarded or adopted it is
// "busy": NewRequest gives nothing for it and blocks for it are refused, so
// no write can race a Publish or a Discard of the same piece.
//
// Close waits for the Store operations in progress (each registers in a
// WaitGroup under mu while the wrapper is open) and then closes the Store,
// so no Store method runs after the Store is closed.
package storagewrapper
