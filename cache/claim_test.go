package cache

import (
	"errors"
	"io/fs"
	"os"
	"strconv"
	"testing"
	"time"

	"btfs/storagewrapper"
)

// claimOwner returns the owner named by piece i's claim file in c's
// directory, "" when there is none.
func claimOwner(t *testing.T, c *Store, i int) string {
	t.Helper()
	h, err := c.readClaim(i)
	if errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return h.raw
}

// writeClaim forges a claim file for piece i naming who.
func writeClaim(t *testing.T, c *Store, i int, who string) {
	t.Helper()
	if err := os.WriteFile(c.claimPath(i), []byte(who+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestClaim(t *testing.T) {
	f := testFixture()
	me, err := self()
	if err != nil {
		t.Fatal(err)
	}
	// A process that has exited and been reaped: its pid is dead.
	gone := startChildProcessAndReap(t)

	tests := []struct {
		name string
		// existing is the claim file found on piece 3, "" for none.
		existing string
		// age is how long ago the existing claim last progressed.
		age     time.Duration
		claimed bool
	}{
		{name: "free", claimed: true},
		{name: "live owner", existing: owner{ns: me.ns, pid: me.pid, start: me.start, nonce: me.nonce + 1}.String(), claimed: false},
		{name: "dead owner, pid gone", existing: owner{ns: me.ns, pid: gone, start: 1, nonce: 1}.String(), claimed: true},
		{name: "dead owner, pid reused", existing: owner{ns: me.ns, pid: me.pid, start: me.start + 1, nonce: 1}.String(), claimed: true},
		{name: "live owner without progress", existing: owner{ns: me.ns, pid: me.pid, start: me.start, nonce: me.nonce + 1}.String(),
			age: time.Hour, claimed: true},
		{name: "other PID namespace, recent", existing: owner{ns: me.ns + 1, pid: gone, start: 1, nonce: 1}.String(), claimed: false},
		{name: "other PID namespace, stale", existing: owner{ns: me.ns + 1, pid: gone, start: 1, nonce: 1}.String(),
			age: time.Hour, claimed: true},
		{name: "garbage being written", existing: "12-", claimed: false},
		{name: "garbage, stale", existing: "12-", age: time.Hour, claimed: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := openStore(t, t.TempDir(), f, Options{})
			if tc.existing != "" {
				writeClaim(t, c, 3, tc.existing)
				old := time.Now().Add(-tc.age)
				if err := os.Chtimes(c.claimPath(3), old, old); err != nil {
					t.Fatal(err)
				}
			}
			ok, err := c.Claim(3)
			if err != nil || ok != tc.claimed {
				t.Fatalf("Claim = %v, %v; want %v", ok, err, tc.claimed)
			}
			want := tc.existing
			if tc.claimed {
				want = c.me.String()
			}
			if got := claimOwner(t, c, 3); got != want {
				t.Fatalf("claim file names %q, want %q", got, want)
			}
			if !tc.claimed {
				return
			}
			// Claims are counted: the file goes with the last Release.
			if ok, err := c.Claim(3); !ok || err != nil {
				t.Fatalf("second Claim = %v, %v", ok, err)
			}
			c.Release(3)
			if claimOwner(t, c, 3) != c.me.String() {
				t.Fatal("claim gone after the first of two Releases")
			}
			c.Release(3)
			if got := claimOwner(t, c, 3); got != "" {
				t.Fatalf("claim file %q left after the last Release", got)
			}
		})
	}
}

// startChildProcessAndReap runs a process that exits at once, waits for
// it, and returns its (now dead) pid.
func startChildProcessAndReap(t *testing.T) int {
	t.Helper()
	p, err := os.StartProcess("/bin/true", []string{"true"}, &os.ProcAttr{})
	if err != nil {
		t.Skipf("cannot run /bin/true: %v", err)
	}
	if _, err := p.Wait(); err != nil {
		t.Fatal(err)
	}
	return p.Pid
}

// TestClaimAcrossProcesses: a child process holds a claim (and wrote
// half the piece in place); it is refused while the child lives, taken
// over at once when the child is killed with SIGKILL, and the half-written
// bytes are never taken for the piece, by this Store or the next.
func TestClaimAcrossProcesses(t *testing.T) {
	f := testFixture()
	dir := t.TempDir()
	ch := startChild(t, "partial", dir, "5")
	c := openStore(t, dir, f, Options{})
	if ok, err := c.Claim(5); ok || err != nil {
		t.Fatalf("Claim of a piece a live process claimed = %v, %v", ok, err)
	}
	if got, err := c.Piece(5).Completion(); got != storagewrapper.Missing || err != nil {
		t.Fatalf("a half-written piece: Completion = %v, %v; want missing", got, err)
	}
	ch.kill()
	if ok, err := c.Claim(5); !ok || err != nil {
		t.Fatalf("Claim of a dead process's piece = %v, %v", ok, err)
	}
	c.Release(5)
	c2 := openStore(t, dir, f, Options{})
	if got, err := c2.Piece(5).Completion(); got != storagewrapper.Missing || err != nil {
		t.Fatalf("a dead process's half-written piece after Open: Completion = %v, %v; want missing", got, err)
	}
	if ok, err := c2.Claim(5); !ok || err != nil {
		t.Fatalf("Claim after the cleaning = %v, %v", ok, err)
	}
}

// TestClaimProgress: a claim whose owner keeps receiving blocks is not
// stale, however old the claim; one without progress for the time-out is.
// Claims are links to their owner's file (whose mtime is the owner's
// progress), or files of their own where links do not work.
func TestClaimProgress(t *testing.T) {
	for _, links := range []bool{true, false} {
		t.Run("links="+strconv.FormatBool(links), func(t *testing.T) {
			f := testFixture()
			dir := t.TempDir()
			b := openStore(t, dir, f, Options{ClaimTimeout: time.Minute})
			a := openStore(t, dir, f, Options{ClaimTimeout: time.Minute})
			if !links {
				a.ownerFile, b.ownerFile = "", ""
			}
			if ok, err := b.Claim(2); !ok || err != nil {
				t.Fatalf("Claim = %v, %v", ok, err)
			}
			if linked, err := b.isLinked(2); err != nil || linked != links {
				t.Fatalf("claim linked = %v, %v; want %v", linked, err, links)
			}
			old := time.Now().Add(-time.Hour)
			if err := os.Chtimes(b.claimPath(2), old, old); err != nil {
				t.Fatal(err)
			}
			// A block arrives at B: its claim shows progress (the
			// throttle is reset rather than waited for).
			b.mu.Lock()
			b.ownerTouched = time.Time{}
			b.own[2].touched = time.Time{}
			b.mu.Unlock()
			if _, err := b.Piece(2).WriteAt(f.piece(2)[:storagewrapper.BlockSize], 0); err != nil {
				t.Fatal(err)
			}
			if ok, err := a.Claim(2); ok || err != nil {
				t.Fatalf("Claim of a claim in progress = %v, %v", ok, err)
			}
			if err := os.Chtimes(b.claimPath(2), old, old); err != nil {
				t.Fatal(err)
			}
			if ok, err := a.Claim(2); !ok || err != nil {
				t.Fatalf("Claim of a claim idle for an hour = %v, %v", ok, err)
			}
			// B's Release must not remove A's claim.
			b.Release(2)
			if got := claimOwner(t, a, 2); got != a.me.String() {
				t.Fatalf("after the old owner's Release the claim names %q", got)
			}
		})
	}
}

// TestClaimSplitsWork: two processes' storagewrappers on one cache never
// download the same piece; a piece claimed elsewhere comes back as
// verified once published, or as requestable when the claim ends.
func TestClaimSplitsWork(t *testing.T) {
	for _, inotify := range []bool{true, false} {
		t.Run("inotify="+strconv.FormatBool(inotify), func(t *testing.T) {
			f := testFixture()
			dir := t.TempDir()
			opts := Options{NoInotify: !inotify, PollInterval: 100 * time.Millisecond}
			ca, cb := openStore(t, dir, f, opts), openStore(t, dir, f, opts)
			wa, wb := newHost(t, f, ca), newHost(t, f, cb)
			run(t, ca, wa)
			run(t, cb, wb)

			if _, st := wa.NewRequest(0); st != storagewrapper.RequestGranted {
				t.Fatalf("A: NewRequest(0) = %v", st)
			}
			if _, st := wb.NewRequest(0); st != storagewrapper.RequestClaimedElsewhere {
				t.Fatalf("B: NewRequest(0) of A's piece = %v", st)
			}
			waitChanges(t, wb, "piece 0 claimed elsewhere", func(c changes) bool { return c.elsewhere[0] })
			// A gives piece 0 up (its peer choked it): B may take it.
			for _, b := range wa.Missing(0) {
				wa.RequestLost(b)
			}
			waitChanges(t, wb, "piece 0 requestable again", func(c changes) bool { return c.unverified[0] })
			if st := download(t, wb, f, 0); st != storagewrapper.RequestGranted {
				t.Fatalf("B: download(0) after A gave it up = %v", st)
			}
			// B published piece 0: A adopts it and has it.
			waitChanges(t, wa, "A adopts piece 0", func(c changes) bool { return c.verified[0] })
			if st := download(t, wa, f, 0); st != storagewrapper.RequestVerified {
				t.Fatalf("A: NewRequest(0) after B published it = %v", st)
			}
			// A downloads piece 1 while B waits for it, then B has it.
			if st := download(t, wa, f, 1); st != storagewrapper.RequestGranted {
				t.Fatalf("A: download(1) = %v", st)
			}
			waitChanges(t, wb, "B adopts piece 1", func(c changes) bool { return c.verified[1] })
		})
	}
}
