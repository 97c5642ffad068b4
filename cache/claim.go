package cache

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"btfs/picker"
	"btfs/storagewrapper"
)

// maxClaimAttempts bounds Claim's create/inspect/take-over rounds.
const maxClaimAttempts = 3

// claimPath is the claim file of piece i.
func (c *Store) claimPath(i int) string {
	return filepath.Join(c.claims, pieceName(i))
}

// Claim implements storagewrapper.Claimer: it creates claims/NNNNNN
// exclusively (a link to our owner file, or a file created with O_EXCL),
// naming this Store's owner. A claim found there is taken
// over when it is stale (owner dead, or no progress for the claim
// time-out); a live one, or a piece already published (which Run then
// adopts), makes Claim report false, and the piece is watched until it is
// published or its claim ends (Host.ClaimEnded).
func (c *Store) Claim(i int) (bool, error) {
	if i < 0 || i >= c.info.NumPieces() {
		return false, fmt.Errorf("cache: claim piece %d of %d: %w", i, c.info.NumPieces(), storagewrapper.ErrOutOfRange)
	}
	if c.closed.Load() {
		return false, fmt.Errorf("cache: claim piece %d: %w", i, storagewrapper.ErrClosed)
	}
	c.claimMu.Lock()
	defer c.claimMu.Unlock()
	c.mu.Lock()
	if oc := c.own[i]; oc != nil {
		oc.refs++
		c.mu.Unlock()
		return true, nil
	}
	c.mu.Unlock()
	// Published already (this process has not adopted it yet): adopting
	// costs a hash, downloading it again costs the swarm a piece.
	if c.marked(i) {
		c.refuse(i, false)
		c.queueAdopt(i)
		return false, nil
	}
	linked := false
	for attempt := 1; ; attempt++ {
		var err error
		linked, err = c.createClaim(i)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) {
			return false, fmt.Errorf("cache: claim piece %d: %w", i, err)
		}
		h, err := c.readClaim(i)
		if errors.Is(err, fs.ErrNotExist) && attempt < maxClaimAttempts {
			continue // released meanwhile
		}
		if err != nil {
			return false, fmt.Errorf("cache: claim piece %d: %w", i, err)
		}
		if h.raw == c.me.String() {
			// Ours, left by a Release that could not remove it.
			if linked, err = c.isLinked(i); err != nil {
				return false, fmt.Errorf("cache: claim piece %d: %w", i, err)
			}
			break
		}
		if attempt >= maxClaimAttempts || !c.stale(i, h) {
			c.refuse(i, true)
			return false, nil
		}
		if err := c.breakClaim(i, h); err != nil {
			return false, fmt.Errorf("cache: claim piece %d: %w", i, err)
		}
	}
	c.mu.Lock()
	oc := &ownClaim{refs: 1, touched: time.Now(), linked: linked}
	c.own[i] = oc
	delete(c.refused, i)
	urgent := len(c.urgentBy[i]) > 0
	c.mu.Unlock()
	if urgent {
		c.ackUrgent(i)
		c.wantUrgent(i)
	}
	return true, nil
}

// Release implements storagewrapper.Claimer: the last Release of a claim
// removes its file, if it is still ours.
func (c *Store) Release(i int) {
	c.claimMu.Lock()
	defer c.claimMu.Unlock()
	c.mu.Lock()
	oc := c.own[i]
	if oc == nil {
		c.mu.Unlock()
		return
	}
	if oc.refs--; oc.refs > 0 {
		c.mu.Unlock()
		return
	}
	delete(c.own, i)
	want := oc.want
	c.mu.Unlock()
	oc.writers.Wait() // no block lands after the tidying
	if err := c.lockDir(); err == nil {
		c.leaveLocked(i)
		c.removeOwnClaim(i)
		c.unlockDir()
	} else {
		c.removeOwnClaim(i)
	}
	if want != nil {
		want()
	}
}

// leaveLocked tidies piece i as a claim of ours on it ends (the caller
// holds the directory lock, and the claim is still ours): blocks written
// under no mark (a download abandoned, dropped, or failed) are punched
// out, so that they take no disk space; and the piece's files are stamped
// as we leave them, so that no other process takes our writes for a
// change behind btfs's back.
func (c *Store) leaveLocked(i int) {
	if s, err := c.slot(i); err == nil && s.state == stateNone {
		if err := c.fst.PunchPiece(i); err != nil {
			c.lim.Warn("cache: cannot free an abandoned piece's disk space", "piece", i, "err", err)
		}
	}
	c.restamp(i)
}

// ownerPrefix begins the name of an owner file in the claims directory.
const ownerPrefix = ".owner."

// createOwnerFile writes claims/.owner.OWNER, the file our claims and
// markers link to; without it (a file system without hard links, a write
// that failed) they are files of their own.
func (c *Store) createOwnerFile() {
	path := filepath.Join(c.claims, ownerPrefix+c.me.String())
	if err := os.WriteFile(path, []byte(c.me.String()+"\n"), 0o644); err != nil {
		c.log.Warn("cache: cannot write our owner file; claims will be files of their own", "err", err)
		return
	}
	c.ownerFile = path
}

// exclusive creates path as a link to the owner file (linked) — or, when
// links do not work, as a new file (O_EXCL) holding our owner name —
// failing with fs.ErrExist when path exists.
func (c *Store) exclusive(path string) (linked bool, err error) {
	if c.ownerFile != "" {
		err := os.Link(c.ownerFile, path)
		if err == nil || errors.Is(err, fs.ErrExist) {
			return err == nil, err
		}
		// EMLINK, EPERM, a file system without links: a file, then.
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return false, err
	}
	_, err = f.WriteString(c.me.String() + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return false, err
	}
	return false, nil
}

// createClaim creates piece i's claim file, failing with fs.ErrExist when
// there is one.
func (c *Store) createClaim(i int) (linked bool, err error) { return c.exclusive(c.claimPath(i)) }

// isLinked reports whether piece i's claim (ours) is a link to the owner
// file.
func (c *Store) isLinked(i int) (bool, error) {
	if c.ownerFile == "" {
		return false, nil
	}
	st, err := os.Stat(c.claimPath(i))
	if err != nil {
		return false, err
	}
	own, err := os.Stat(c.ownerFile)
	if err != nil {
		return false, err
	}
	return os.SameFile(st, own), nil
}

// removeOwnClaim removes piece i's claim file if it names this Store (a
// claim taken over from us is the new owner's).
func (c *Store) removeOwnClaim(i int) {
	h, err := c.readClaim(i)
	if err != nil || h.raw != c.me.String() {
		return
	}
	if err := os.Remove(c.claimPath(i)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		c.lim.Warn("cache: cannot remove our claim", "piece", i, "err", err)
	}
}

// claimFile is what a claim file says.
type claimFile struct {
	// raw is its content, trimmed.
	raw string
	// owner is raw parsed; ok is false when raw is not an owner (being
	// written, or garbage).
	owner owner
	ok    bool
	// mtime is its last progress.
	mtime time.Time
}

// readClaim reads piece i's claim file.
func (c *Store) readClaim(i int) (claimFile, error) {
	return readClaimFile(c.claimPath(i))
}

// readClaimFile reads the claim file at path.
func readClaimFile(path string) (claimFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return claimFile{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return claimFile{}, err
	}
	buf := make([]byte, 128)
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return claimFile{}, err
	}
	h := claimFile{raw: strings.TrimSpace(string(buf[:n])), mtime: st.ModTime()}
	h.owner, h.ok = parseOwner(h.raw)
	return h, nil
}

// stale reports whether piece i's claim h may be taken over (staleAt, now,
// with our urgency marker on i if we wrote one).
func (c *Store) stale(i int, h claimFile) bool {
	c.mu.Lock()
	markedAt := c.markers[i]
	c.mu.Unlock()
	return c.staleAt(h, markedAt, time.Now())
}

// staleAt reports whether claim h may be taken over at now: its owner is
// dead; or it made no progress for the claim time-out (its owner alive,
// stuck, or in another PID namespace where we cannot tell); or a reader of
// ours marked the piece urgent at markedAt (zero: not marked) and the
// owner has not acknowledged it within urgentAckTimeout (ackUrgent moves
// the claim's mtime past the marker): a frozen owner, whose piece a reader
// must not wait the whole claim time-out for.
func (c *Store) staleAt(h claimFile, markedAt, now time.Time) bool {
	if h.ok && h.owner.liveness(c.me) == dead {
		return true
	}
	if now.Sub(h.mtime) > c.claimTimeout {
		return true
	}
	return !markedAt.IsZero() && now.Sub(markedAt) > urgentAckTimeout && h.mtime.Before(markedAt)
}

// ackUrgent tells the other processes whose readers marked piece i urgent
// that we, its owner, saw their markers: the claim's mtime (our owner
// file's, for a linked claim) moves past their markers' time (staleAt).
func (c *Store) ackUrgent(i int) {
	now := time.Now()
	c.mu.Lock()
	oc := c.own[i]
	var path string
	switch {
	case oc == nil:
	case oc.linked:
		c.ownerTouched, path = now, c.ownerFile
	default:
		oc.touched, path = now, c.claimPath(i)
	}
	c.mu.Unlock()
	if path != "" {
		if err := os.Chtimes(path, now, now); err != nil {
			c.log.Debug("cache: cannot acknowledge an urgency marker", "piece", i, "err", err)
		}
	}
}

// breakClaim removes piece i's claim h, under the directory lock and only
// if it is still h and still stale: two processes breaking the same claim
// must not remove the claim the faster one then created.
func (c *Store) breakClaim(i int, h claimFile) error {
	if err := c.lockDir(); err != nil {
		return err
	}
	defer c.unlockDir()
	cur, err := c.readClaim(i)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	c.mu.Lock()
	markedAt := c.markers[i]
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if cur.raw != h.raw || !cur.mtime.Equal(h.mtime) || !c.stale(i, cur) {
		return nil
	}
	if err := os.Remove(c.claimPath(i)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	c.log.Info("cache: took over a stale claim", "piece", i, "owner", cur.raw, "idle", time.Since(cur.mtime).Round(time.Millisecond), "urgent", !markedAt.IsZero())
	return nil
}

// progress records that a block of piece i arrived: its claim is alive. It
// bumps the mtime of the claim — that is, of the owner file all our linked
// claims share: the progress of this process — at most every touchEvery.
func (c *Store) progress(i int) {
	now := time.Now()
	c.mu.Lock()
	oc := c.own[i]
	var path string
	switch {
	case oc == nil:
	case oc.linked && now.Sub(c.ownerTouched) >= c.touchEvery:
		c.ownerTouched, path = now, c.ownerFile
	case !oc.linked && now.Sub(oc.touched) >= c.touchEvery:
		oc.touched, path = now, c.claimPath(i)
	}
	c.mu.Unlock()
	if path != "" {
		if err := os.Chtimes(path, now, now); err != nil {
			c.log.Debug("cache: cannot record progress", "piece", i, "err", err)
		}
	}
}

// refuse records that piece i is claimed (claimed) or published (!claimed)
// by another process; a reader of ours waiting for a claimed piece makes it
// urgent for its owner.
func (c *Store) refuse(i int, claimed bool) {
	c.pinMu.Lock()
	pinned := claimed && c.pins[i] > 0
	c.pinMu.Unlock()
	c.mu.Lock()
	c.refused[i] = struct{}{}
	_, marked := c.markers[i]
	mark := pinned && !marked
	if mark {
		c.markers[i] = time.Now()
	}
	c.mu.Unlock()
	if mark {
		c.writeMarker(i)
	}
}

// wantUrgent registers, with the Host, a Now want on piece i (ours, which
// another process's reader waits for), kept until the claim is released or
// the marker removed.
func (c *Store) wantUrgent(i int) {
	c.mu.Lock()
	host := c.host
	c.mu.Unlock()
	if host == nil {
		return
	}
	off := c.info.PieceOffset(i)
	release := host.Want(picker.Want{Start: off, End: off + c.info.PieceLen(i), Priority: picker.Now, Deadline: time.Now()})
	c.mu.Lock()
	oc := c.own[i]
	keep := oc != nil && oc.want == nil && len(c.urgentBy[i]) > 0
	if keep {
		oc.want = release
	}
	c.mu.Unlock()
	if !keep {
		release()
		return
	}
	c.log.Debug("cache: another process waits for a piece we download", "piece", i)
}

// refusedPieces returns the pieces refused; with onlyPinned, only those a
// reader of ours waits for.
func (c *Store) refusedPieces(onlyPinned bool) []int {
	c.mu.Lock()
	out := make([]int, 0, len(c.refused))
	for i := range c.refused {
		out = append(out, i)
	}
	c.mu.Unlock()
	if !onlyPinned {
		return out
	}
	c.pinMu.Lock()
	kept := out[:0]
	for _, i := range out {
		if c.pins[i] > 0 {
			kept = append(kept, i)
		}
	}
	c.pinMu.Unlock()
	return kept
}

// checkRefused looks at the claims of refused pieces: a published piece is
// adopted, and a claim that is gone or stale ends (a stale one is broken),
// so that the engine requests the piece again.
func (c *Store) checkRefused(onlyPinned bool) {
	for _, i := range c.refusedPieces(onlyPinned) {
		if c.marked(i) {
			c.queueAdopt(i)
			continue
		}
		h, err := c.readClaim(i)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			c.log.Debug("cache: cannot read a claim", "piece", i, "err", err)
			continue
		case !c.stale(i, h):
			continue
		default:
			if err := c.breakClaim(i, h); err != nil {
				c.log.Warn("cache: cannot break a stale claim", "piece", i, "err", err)
				continue
			}
		}
		c.claimEnded(i)
	}
}

// claimEnded tells the Host that refused piece i may be requested again.
func (c *Store) claimEnded(i int) {
	c.mu.Lock()
	_, refused := c.refused[i]
	delete(c.refused, i)
	host := c.host
	c.mu.Unlock()
	if refused && host != nil {
		host.ClaimEnded(i)
	}
}

// pieceName is piece i's name in claims/ and urgent/.
func pieceName(i int) string { return fmt.Sprintf("%06d", i) }

// parsePieceName returns the piece index of a name in claims/ (or the
// first part of one in urgent/); false for a name that is not a piece's.
func parsePieceName(name string) (int, bool) {
	if len(name) < 6 {
		return 0, false
	}
	i := 0
	for _, c := range []byte(name) {
		if c < '0' || c > '9' || i > 1<<30 {
			return 0, false
		}
		i = i*10 + int(c-'0')
	}
	return i, true
}
