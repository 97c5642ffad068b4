package swarmtest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"btfs/engine/tracker"
	"btfs/metainfo"
)

// Tracker is an opentracker serving HTTP and UDP on 127.0.0.1, whitelisted
// for the info-hashes given to StartTracker and AddInfoHash.
type Tracker struct {
	// httpURL and udpURL are the announce URLs.
	httpURL, udpURL string
	// whitelist is the path of the whitelist file.
	whitelist string
	// proc is the running opentracker.
	proc *process
	// client polls the tracker for readiness and peers.
	client *tracker.Client
	// probe is the address the polling client announces as: 127.0.0.1:1,
	// taken out again with "stopped" after each poll.
	probe netip.AddrPort

	// mu guards hashes and the whitelist file.
	mu sync.Mutex
	// hashes are the whitelisted info-hashes.
	hashes []metainfo.Hash
}

// StartTracker runs opentracker on 127.0.0.1 with a whitelist of
// infoHashes, and returns once it accepts announces for all of them over
// HTTP and answers over UDP. It is stopped in t.Cleanup.
//
// opentracker refuses to run as root, and as root it chroots and then
// drops to -u: here it is started as user nobody directly (when the test
// runs as root), so it never holds root and keeps the parent-death signal
// that a later privilege change would clear. Unprivileged, it skips the
// chroot and only changes into its directory, so the whitelist is given
// by absolute path in a directory that nobody can read (outside
// t.TempDir, whose parents are private to root).
func StartTracker(t testing.TB, infoHashes ...metainfo.Hash) *Tracker {
	t.Helper()
	Require(t, "opentracker")
	dir, err := os.MkdirTemp("", "btfs-swarmtest-tracker-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tr := &Tracker{
		whitelist: filepath.Join(dir, "wl.txt"),
		client:    tracker.NewClient(tracker.Options{UDP: tracker.UDPOptions{RetransmitBase: 200 * time.Millisecond, MaxRetransmits: 3}}),
		probe:     netip.MustParseAddrPort("127.0.0.1:1"),
		hashes:    append([]metainfo.Hash(nil), infoHashes...),
	}
	t.Cleanup(func() { tr.client.Close() })
	if err := tr.writeWhitelist(); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for range startAttempts {
		if lastErr = tr.start(t, dir); lastErr == nil {
			return tr
		}
		if tr.proc != nil {
			tr.proc.stop()
		}
	}
	t.Fatalf("swarmtest: opentracker did not start: %v", lastErr)
	return nil
}

// start runs opentracker on fresh ports and waits until it is ready.
func (tr *Tracker) start(t testing.TB, dir string) error {
	lo := netip.MustParseAddr("127.0.0.1")
	tcp, err := freePort("tcp", lo)
	if err != nil {
		return err
	}
	udp, err := freePort("udp", lo)
	if err != nil {
		return err
	}
	tr.httpURL = fmt.Sprintf("http://127.0.0.1:%d/announce", tcp)
	tr.udpURL = fmt.Sprintf("udp://127.0.0.1:%d/announce", udp)
	tr.proc, err = startProcess(t, dir, true, "opentracker",
		"-i", "127.0.0.1", "-p", strconv.Itoa(tcp), "-P", strconv.Itoa(udp),
		"-d", dir, "-u", "nobody", "-w", tr.whitelist)
	if err != nil {
		return err
	}
	tr.mu.Lock()
	hashes := append([]metainfo.Hash(nil), tr.hashes...)
	tr.mu.Unlock()
	if err := tr.waitAccepted(hashes...); err != nil {
		return err
	}
	// UDP: a scrape registers nobody and proves the socket answers.
	return poll(20*time.Millisecond, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := tr.client.UDP.Scrape(ctx, tr.udpURL, []metainfo.Hash{{}})
		return err == nil
	}, tr.proc.exited)
}

// HTTPURL is the tracker's HTTP announce URL.
func (tr *Tracker) HTTPURL() string { return tr.httpURL }

// UDPURL is the tracker's UDP announce URL (BEP 15).
func (tr *Tracker) UDPURL() string { return tr.udpURL }

// PID is opentracker's process id.
func (tr *Tracker) PID() int { return tr.proc.cmd.Process.Pid }

// AddInfoHash whitelists h on the running tracker: it rewrites the
// whitelist, sends SIGHUP (opentracker reloads its whitelist on it) and
// waits until announces for h are accepted.
func (tr *Tracker) AddInfoHash(t testing.TB, h metainfo.Hash) {
	t.Helper()
	tr.mu.Lock()
	tr.hashes = append(tr.hashes, h)
	err := tr.writeWhitelist()
	tr.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.proc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatalf("swarmtest: SIGHUP to opentracker: %v", err)
	}
	if err := tr.waitAccepted(h); err != nil {
		t.Fatalf("swarmtest: opentracker did not accept %s after SIGHUP: %v", h, err)
	}
}

// writeWhitelist replaces the whitelist file atomically. Callers hold mu
// (or own tr alone).
func (tr *Tracker) writeWhitelist() error {
	var b strings.Builder
	for _, h := range tr.hashes {
		b.WriteString(h.String())
		b.WriteByte('\n')
	}
	tmp := tr.whitelist + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("swarmtest: whitelist: %w", err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil { // whatever the umask
		return fmt.Errorf("swarmtest: whitelist: %w", err)
	}
	if err := os.Rename(tmp, tr.whitelist); err != nil {
		return fmt.Errorf("swarmtest: whitelist: %w", err)
	}
	return nil
}

// waitAccepted polls until the tracker accepts announces for every hash.
// opentracker loads its whitelist asynchronously, so a started tracker
// refuses for a moment what it will accept. With no hash, it waits for any
// well-formed reply (a refusal included).
func (tr *Tracker) waitAccepted(hashes ...metainfo.Hash) error {
	if len(hashes) == 0 {
		return poll(20*time.Millisecond, func() bool {
			_, err := tr.Peers(context.Background(), metainfo.Hash{})
			var fe *tracker.FailureError
			return err == nil || errors.As(err, &fe)
		}, tr.proc.exited)
	}
	for _, h := range hashes {
		var last error
		err := poll(20*time.Millisecond, func() bool {
			_, last = tr.Peers(context.Background(), h)
			return last == nil
		}, tr.proc.exited)
		if err != nil {
			return fmt.Errorf("info-hash %s: %w (last announce: %v)", h, err, last)
		}
	}
	return nil
}

// Peers asks the tracker, over HTTP, for the peers of ih, as a throwaway
// seed at 127.0.0.1:1 that it then takes out again with "stopped"; the
// throwaway is left out of the result.
func (tr *Tracker) Peers(ctx context.Context, ih metainfo.Hash) ([]netip.AddrPort, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req := tracker.AnnounceRequest{InfoHash: ih, Port: int(tr.probe.Port()), NumWant: 200}
	copy(req.PeerID[:], "-SWARMTEST-")
	rand.Read(req.PeerID[11:])
	resp, err := tr.client.HTTP.Announce(ctx, tr.httpURL, req)
	if err != nil {
		return nil, err
	}
	req.Event = tracker.EventStopped
	if _, err := tr.client.HTTP.Announce(ctx, tr.httpURL, req); err != nil {
		return nil, fmt.Errorf("swarmtest: taking the probe out again: %w", err)
	}
	var peers []netip.AddrPort
	for _, p := range resp.Peers {
		if p != tr.probe {
			peers = append(peers, p)
		}
	}
	return peers, nil
}

// WaitForPeer waits until the tracker lists addr among the peers of ih.
func (tr *Tracker) WaitForPeer(t testing.TB, ih metainfo.Hash, addr netip.AddrPort) {
	t.Helper()
	var last []netip.AddrPort
	var lastErr error
	err := poll(50*time.Millisecond, func() bool {
		last, lastErr = tr.Peers(context.Background(), ih)
		for _, p := range last {
			if p == addr {
				return true
			}
		}
		return false
	}, tr.proc.exited)
	if err != nil {
		t.Fatalf("swarmtest: tracker never listed %v for %s: %v (last peers %v, last error %v)", addr, ih, err, last, lastErr)
	}
}

// Scrape asks the tracker, over UDP (BEP 15), for its counts of ih:
// seeders, leechers, and how many "completed" events it has seen.
// Scraping registers nobody.
func (tr *Tracker) Scrape(ctx context.Context, ih metainfo.Hash) (tracker.ScrapeResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	res, err := tr.client.UDP.Scrape(ctx, tr.udpURL, []metainfo.Hash{ih})
	if err != nil {
		return tracker.ScrapeResult{}, fmt.Errorf("swarmtest: scrape %s: %w", ih, err)
	}
	if len(res) != 1 {
		return tracker.ScrapeResult{}, fmt.Errorf("swarmtest: scrape %s: %d results for one hash", ih, len(res))
	}
	return res[0], nil
}
