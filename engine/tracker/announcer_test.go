package tracker

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a manual Clock: Now stands still, and every After is sent
// to waits for the test to inspect and fire.
type fakeClock struct {
	// now is the fixed current time.
	now time.Time
	// waits receives each timer the Announcer asks for.
	waits chan fakeTimer
}

// fakeTimer is one After call.
type fakeTimer struct {
	// d is the duration asked for.
	d time.Duration
	// c fires the timer.
	c chan time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Unix(1e9, 0), waits: make(chan fakeTimer, 100)}
}

func (f *fakeClock) Now() time.Time { return f.now }

func (f *fakeClock) After(d time.Duration) <-chan time.Time {
	c := make(chan time.Time, 1)
	f.waits <- fakeTimer{d, c}
	return c
}

// announceTracker is an HTTP tracker that records each announce's query
// and answers with reply(query).
type announceTracker struct {
	// url is the announce URL.
	url string
	// got receives each announce's query.
	got chan url.Values
}

func startAnnounceTracker(t *testing.T, reply func(q url.Values) string) *announceTracker {
	t.Helper()
	at := &announceTracker{got: make(chan url.Values, 100)}
	srv := httpTracker(t, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		at.got <- q
		fmt.Fprint(w, reply(q))
	})
	at.url = srv.URL + "/announce"
	return at
}

// stats is a Stats source the test changes.
type stats struct {
	// mu guards s.
	mu sync.Mutex
	// s is what Stats returns.
	s Stats
}

func (s *stats) get() Stats         { s.mu.Lock(); defer s.mu.Unlock(); return s.s }
func (s *stats) setLeft(left int64) { s.mu.Lock(); s.s.Left = left; s.mu.Unlock() }

// announcerRun is a running Announcer with its fakes; stop cancels it and
// waits for Run to return.
type announcerRun struct {
	// a is the Announcer under test.
	a *Announcer
	// clock is its manual clock.
	clock *fakeClock
	// stats is its Stats source.
	stats *stats
	// peers receives what OnPeers gets.
	peers chan []netip.AddrPort
	// cancel ends Run's context.
	cancel context.CancelFunc
	// done is closed when Run has returned.
	done chan struct{}
}

func startAnnouncer(t *testing.T, tiers *Tiers, left int64, mod func(*AnnouncerConfig)) *announcerRun {
	t.Helper()
	r := &announcerRun{clock: newFakeClock(), stats: &stats{s: Stats{Left: left}}, peers: make(chan []netip.AddrPort, 100), done: make(chan struct{})}
	client := NewClient(Options{})
	t.Cleanup(func() { client.Close() })
	cfg := AnnouncerConfig{
		Client: client, Tiers: tiers, Port: 6881, Key: 7, NumWant: 20,
		Stats: r.stats.get, OnPeers: func(p []netip.AddrPort) { r.peers <- p },
		Clock: r.clock,
	}
	copy(cfg.PeerID[:], "-BT0001-announcer-01")
	if mod != nil {
		mod(&cfg)
	}
	a, err := NewAnnouncer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r.a = a
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { defer close(r.done); a.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

func (r *announcerRun) stop() { r.cancel(); <-r.done }

// expectAnnounce waits for the next announce and checks its event.
func expectAnnounce(t *testing.T, at *announceTracker, event string) url.Values {
	t.Helper()
	var q url.Values
	select {
	case q = <-at.got:
	case <-time.After(guard):
		t.Fatalf("no announce (want event %q) within %v", event, guard)
	}
	if got := q.Get("event"); got != event {
		t.Fatalf("announce with event %q, want %q", got, event)
	}
	return q
}

// expectWait waits for the next timer and checks its duration.
func expectWait(t *testing.T, c *fakeClock, d time.Duration) fakeTimer {
	t.Helper()
	var w fakeTimer
	select {
	case w = <-c.waits:
	case <-time.After(guard):
		t.Fatalf("no timer (want %v) within %v", d, guard)
	}
	if w.d != d {
		t.Fatalf("timer of %v, want %v", w.d, d)
	}
	return w
}

// guard bounds each wait for the Announcer, so that a broken Announcer
// fails the test instead of hanging it; it is not a performance bound.
const guard = 30 * time.Second

const standardReply = "d8:intervali1800e12:min intervali900e5:peers6:\x7f\x00\x00\x02\x1a\xe1e"

func TestAnnouncerLifecycle(t *testing.T) {
	at := startAnnounceTracker(t, func(url.Values) string { return standardReply })
	r := startAnnouncer(t, NewTiers(at.url, nil, nil), 1000, nil)

	q := expectAnnounce(t, at, "started")
	if q.Get("left") != "1000" || q.Get("port") != "6881" || q.Get("numwant") != "20" || q.Get("peer_id") != "-BT0001-announcer-01" {
		t.Fatalf("started announce %v", q)
	}
	if p := <-r.peers; len(p) != 1 || p[0] != netip.MustParseAddrPort("127.0.0.2:6881") {
		t.Fatalf("peers %v", p)
	}
	w := expectWait(t, r.clock, 1800*time.Second)

	// The interval passes: a regular announce.
	w.c <- r.clock.now
	expectAnnounce(t, at, "")
	<-r.peers
	expectWait(t, r.clock, 1800*time.Second)

	// The engine wants peers: not before the min interval.
	r.a.Need()
	w = expectWait(t, r.clock, 900*time.Second)
	w.c <- r.clock.now
	expectAnnounce(t, at, "")
	<-r.peers
	expectWait(t, r.clock, 1800*time.Second)

	// The download completes: "completed" at once, and only once.
	r.stats.setLeft(0)
	r.a.Completed()
	if q := expectAnnounce(t, at, "completed"); q.Get("left") != "0" {
		t.Fatalf("completed with left %s", q.Get("left"))
	}
	<-r.peers
	expectWait(t, r.clock, 1800*time.Second)
	r.a.Completed()
	r.a.Need()
	expectWait(t, r.clock, 900*time.Second) // the Need, and no second "completed" before it
	if len(at.got) != 0 {
		t.Fatalf("unexpected announce %v", <-at.got)
	}

	// Shutdown sends "stopped".
	r.stop()
	expectAnnounce(t, at, "stopped")
}

// TestAnnouncerExternalPort: the port a NAT gateway maps for us is
// announced once known, the listen port before it and after it is gone.
func TestAnnouncerExternalPort(t *testing.T) {
	at := startAnnounceTracker(t, func(url.Values) string { return standardReply })
	var ext atomic.Int64
	r := startAnnouncer(t, NewTiers(at.url, nil, nil), 1000, func(c *AnnouncerConfig) {
		c.ExternalPort = func() int { return int(ext.Load()) }
	})
	for _, tc := range []struct {
		ext         int64
		event, want string
	}{
		{0, "started", "6881"},
		{40000, "", "40000"},
		{70000, "", "6881"}, // out of range: ignored
		{0, "", "6881"},
	} {
		ext.Store(tc.ext)
		if tc.event == "" {
			w := expectWait(t, r.clock, 1800*time.Second)
			w.c <- r.clock.now
		}
		if q := expectAnnounce(t, at, tc.event); q.Get("port") != tc.want {
			t.Errorf("external port %d: announced port %s, want %s", tc.ext, q.Get("port"), tc.want)
		}
		<-r.peers
	}
}

func TestAnnouncerNoticesCompletionFromStats(t *testing.T) {
	at := startAnnounceTracker(t, func(url.Values) string { return standardReply })
	r := startAnnouncer(t, NewTiers(at.url, nil, nil), 1000, nil)
	expectAnnounce(t, at, "started")
	w := expectWait(t, r.clock, 1800*time.Second)
	r.stats.setLeft(0) // nobody calls Completed
	w.c <- r.clock.now
	expectAnnounce(t, at, "completed")
	w = expectWait(t, r.clock, 1800*time.Second)
	w.c <- r.clock.now
	expectAnnounce(t, at, "")
}

func TestAnnouncerSeedNeverCompletes(t *testing.T) {
	at := startAnnounceTracker(t, func(url.Values) string { return standardReply })
	r := startAnnouncer(t, NewTiers(at.url, nil, nil), 0, nil)
	if q := expectAnnounce(t, at, "started"); q.Get("left") != "0" {
		t.Fatalf("left %s", q.Get("left"))
	}
	w := expectWait(t, r.clock, 1800*time.Second)
	r.a.Completed()
	w.c <- r.clock.now
	expectAnnounce(t, at, "")
}

func TestAnnouncerIntervals(t *testing.T) {
	for _, tc := range []struct {
		name      string
		reply     string
		wantWait  time.Duration
		wantNeedW time.Duration
	}{
		{"no interval: default, floor as min", "d5:peers0:e", 30 * time.Minute, time.Minute},
		{"interval under the floor", "d8:intervali5e12:min intervali1ee", time.Minute, time.Minute},
		{"interval over the cap", "d8:intervali99999ee", time.Hour, time.Minute},
		{"min interval over interval", "d8:intervali600e12:min intervali9000ee", 10 * time.Minute, 10 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at := startAnnounceTracker(t, func(url.Values) string { return tc.reply })
			r := startAnnouncer(t, NewTiers(at.url, nil, nil), 1, nil)
			expectAnnounce(t, at, "started")
			expectWait(t, r.clock, tc.wantWait)
			r.a.Need()
			expectWait(t, r.clock, tc.wantNeedW)
		})
	}
}

func TestAnnouncerBacksOff(t *testing.T) {
	fail := true
	var mu sync.Mutex
	at := startAnnounceTracker(t, func(url.Values) string {
		mu.Lock()
		defer mu.Unlock()
		if fail {
			return "d14:failure reason4:busye"
		}
		return standardReply
	})
	r := startAnnouncer(t, NewTiers(at.url, nil, nil), 1, func(c *AnnouncerConfig) {
		c.RetryBase, c.RetryMax = 10*time.Second, 35*time.Second
	})
	waits := []time.Duration{10, 20, 35, 35}
	for i, d := range waits {
		expectAnnounce(t, at, "started") // never accepted, so still "started"
		expectWait(t, r.clock, d*time.Second)
		r.a.Need() // a failing tracker is not hammered by Need either
		w := expectWait(t, r.clock, d*time.Second)
		if i == len(waits)-1 {
			mu.Lock()
			fail = false
			mu.Unlock()
		}
		w.c <- r.clock.now
	}
	expectAnnounce(t, at, "started")
	expectWait(t, r.clock, 1800*time.Second) // success resets the backoff
	r.stop()
	expectAnnounce(t, at, "stopped")
}

func TestAnnouncerNoStoppedWithoutStarted(t *testing.T) {
	at := startAnnounceTracker(t, func(url.Values) string { return "d14:failure reason4:nopee" })
	r := startAnnouncer(t, NewTiers(at.url, nil, nil), 1, nil)
	expectAnnounce(t, at, "started")
	expectWait(t, r.clock, 15*time.Second)
	r.stop()
	if len(at.got) != 0 {
		t.Fatalf("announce %v after a stop with no tracker started", <-at.got)
	}
}

func TestAnnouncerFallsThroughTiers(t *testing.T) {
	dead := startAnnounceTracker(t, func(url.Values) string { return "d14:failure reason4:gonee" })
	live := startAnnounceTracker(t, func(url.Values) string {
		return "d8:intervali1800e10:tracker id5:tid-7e"
	})
	r := startAnnouncer(t, NewTiers("", [][]string{{dead.url}, {live.url}}, nil), 1, nil)
	expectAnnounce(t, dead, "started")
	expectAnnounce(t, live, "started")
	w := expectWait(t, r.clock, 1800*time.Second)
	w.c <- r.clock.now
	expectAnnounce(t, dead, "started") // the first tier is always asked first (BEP 12)
	if q := expectAnnounce(t, live, ""); q.Get("trackerid") != "tid-7" {
		t.Fatalf("tracker id %q not sent back", q.Get("trackerid"))
	}
	expectWait(t, r.clock, 1800*time.Second)
	r.stop()
	expectAnnounce(t, live, "stopped") // only to the tracker that knows us
	if len(dead.got) != 0 {
		t.Fatalf("dead tracker got %v", <-dead.got)
	}
}

func TestAnnouncerStopIsBounded(t *testing.T) {
	hang := make(chan struct{})
	t.Cleanup(func() { close(hang) })
	at := &announceTracker{got: make(chan url.Values, 100)}
	srv := httpTracker(t, func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		at.got <- q
		if q.Get("event") == "stopped" {
			select {
			case <-hang:
			case <-r.Context().Done():
			}
			return
		}
		fmt.Fprint(w, standardReply)
	})
	at.url = srv.URL
	r := startAnnouncer(t, NewTiers(at.url, nil, nil), 1, func(c *AnnouncerConfig) { c.StopTimeout = 50 * time.Millisecond })
	expectAnnounce(t, at, "started")
	expectWait(t, r.clock, 1800*time.Second)
	r.stop() // returns although the tracker never answers "stopped"
	expectAnnounce(t, at, "stopped")
}

func TestNewAnnouncerChecksConfig(t *testing.T) {
	good := AnnouncerConfig{Client: NewClient(Options{}), Tiers: NewTiers("http://127.0.0.1:1/a", nil, nil), Stats: func() Stats { return Stats{} }}
	defer good.Client.(*Client).Close()
	for name, mod := range map[string]func(*AnnouncerConfig){
		"client": func(c *AnnouncerConfig) { c.Client = nil },
		"tiers":  func(c *AnnouncerConfig) { c.Tiers = nil },
		"stats":  func(c *AnnouncerConfig) { c.Stats = nil },
		"port":   func(c *AnnouncerConfig) { c.Port = -1 },
	} {
		cfg := good
		mod(&cfg)
		if _, err := NewAnnouncer(cfg); err == nil {
			t.Errorf("bad %s accepted", name)
		}
	}
	a, err := NewAnnouncer(AnnouncerConfig{Client: good.Client, Tiers: NewTiers("", nil, nil), Stats: good.Stats})
	if err != nil {
		t.Fatal(err)
	}
	a.Run(context.Background()) // no tracker: returns at once
}
