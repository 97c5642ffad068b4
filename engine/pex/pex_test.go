package pex

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"btfs/engine/wire"
	"btfs/internal/leakcheck"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// peers makes connected-peer lists: "127.0.0.1:1" style addresses, no flags.
func peers(addrs ...string) []wire.PexPeer {
	var ps []wire.PexPeer
	for _, a := range addrs {
		ps = append(ps, wire.PexPeer{Addr: ap(a)})
	}
	return ps
}

// numbered returns n distinct loopback peers from port base on.
func numbered(n, base int) []wire.PexPeer {
	ps := make([]wire.PexPeer, n)
	for i := range ps {
		ps[i] = wire.PexPeer{Addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(base+i))}
	}
	return ps
}

func addrsOf(ps []wire.PexPeer) []string {
	var s []string
	for _, p := range ps {
		s = append(s, p.Addr.String())
	}
	return s
}

func strs(as []netip.AddrPort) []string {
	var s []string
	for _, a := range as {
		s = append(s, a.String())
	}
	return s
}

func TestSender(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	type step struct {
		at          time.Duration // since t0
		connected   []wire.PexPeer
		ok          bool
		added       []string
		dropped     []string
		wantTold    int
		addedFlags  []wire.PexFlags // if set, the flags of added
		description string
	}
	tests := []struct {
		name   string
		remote string
		steps  []step
	}{
		{"first message at once, then only changes, at most once a minute", "127.0.0.1:9000", []step{
			{at: 0, connected: peers("127.0.0.1:1", "127.0.0.1:2"), ok: true, added: []string{"127.0.0.1:1", "127.0.0.1:2"}, wantTold: 2},
			{at: 30 * time.Second, connected: peers("127.0.0.1:1", "127.0.0.1:3"), ok: false, wantTold: 2, description: "too soon"},
			{at: time.Minute, connected: peers("127.0.0.1:1", "127.0.0.1:3"), ok: true, added: []string{"127.0.0.1:3"}, dropped: []string{"127.0.0.1:2"}, wantTold: 2},
			{at: 3 * time.Minute, connected: peers("127.0.0.1:3", "127.0.0.1:1"), ok: false, wantTold: 2, description: "nothing new"},
			{at: 3*time.Minute + time.Second, connected: peers("127.0.0.1:3"), ok: true, dropped: []string{"127.0.0.1:1"}, wantTold: 1, description: "a change after a quiet spell goes at once"},
		}},
		{"the remote and bad addresses are never sent", "127.0.0.1:9000", []step{
			{at: 0, connected: peers("127.0.0.1:9000", "127.0.0.1:0", "0.0.0.0:5", "224.0.0.1:5", "[::ffff:127.0.0.1]:9000", "127.0.0.1:7"), ok: true, added: []string{"127.0.0.1:7"}, wantTold: 1},
		}},
		{"unknown remote", "", []step{
			{at: 0, connected: peers("127.0.0.1:9000"), ok: true, added: []string{"127.0.0.1:9000"}, wantTold: 1},
		}},
		{"mapped and plain are one peer; duplicates once", "", []step{
			{at: 0, connected: peers("[::ffff:10.0.0.1]:5", "10.0.0.1:5"), ok: true, added: []string{"10.0.0.1:5"}, wantTold: 1},
			{at: time.Minute, connected: peers("10.0.0.1:5"), ok: false, wantTold: 1},
		}},
		{"flags are carried", "", []step{
			{at: 0, connected: []wire.PexPeer{{Addr: ap("127.0.0.1:1"), Flags: wire.PexSeed | wire.PexReachable}}, ok: true, added: []string{"127.0.0.1:1"}, addedFlags: []wire.PexFlags{wire.PexSeed | wire.PexReachable}, wantTold: 1},
		}},
		{"at most 50 added a message; the rest next minute", "", []step{
			{at: 0, connected: numbered(120, 1000), ok: true, added: addrsOf(numbered(50, 1000)), wantTold: 50},
			{at: time.Minute, connected: numbered(120, 1000), ok: true, added: addrsOf(numbered(50, 1050)), wantTold: 100},
			{at: 2 * time.Minute, connected: numbered(120, 1000), ok: true, added: addrsOf(numbered(20, 1100)), wantTold: 120},
		}},
		{"at most 50 dropped a message, lowest first", "", []step{
			{at: 0, connected: numbered(50, 1000), ok: true, added: addrsOf(numbered(50, 1000)), wantTold: 50},
			{at: time.Minute, connected: numbered(50, 2000), ok: true, added: addrsOf(numbered(50, 2000)), dropped: addrsOf(numbered(50, 1000)), wantTold: 50},
			{at: 2 * time.Minute, connected: nil, ok: true, dropped: addrsOf(numbered(50, 2000)), wantTold: 0},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var remote netip.AddrPort
			if tc.remote != "" {
				remote = ap(tc.remote)
			}
			s := NewSender(remote)
			for i, st := range tc.steps {
				msg, ok := s.Next(t0.Add(st.at), st.connected)
				if ok != st.ok {
					t.Fatalf("step %d (%s): ok %v, want %v", i, st.description, ok, st.ok)
				}
				if got := addrsOf(msg.Added); !slices.Equal(got, st.added) {
					t.Fatalf("step %d: added %v, want %v", i, got, st.added)
				}
				if got := strs(msg.Dropped); !slices.Equal(got, st.dropped) {
					t.Fatalf("step %d: dropped %v, want %v", i, got, st.dropped)
				}
				if st.addedFlags != nil {
					var fl []wire.PexFlags
					for _, p := range msg.Added {
						fl = append(fl, p.Flags)
					}
					if !slices.Equal(fl, st.addedFlags) {
						t.Fatalf("step %d: flags %v, want %v", i, fl, st.addedFlags)
					}
				}
				if s.Told() != st.wantTold {
					t.Fatalf("step %d: told %d, want %d", i, s.Told(), st.wantTold)
				}
				if ok {
					if _, err := wire.EncodePex(msg); err != nil {
						t.Fatalf("step %d: the message does not encode: %v", i, err)
					}
				}
			}
		})
	}
}

func TestAcceptable(t *testing.T) {
	tests := []struct {
		addr, from string
		want       bool
	}{
		{"8.8.8.8:6881", "9.9.9.9", true},
		{"[2001:db8::1]:6881", "9.9.9.9", true},
		{"8.8.8.8:0", "9.9.9.9", false},
		{"0.0.0.0:6881", "9.9.9.9", false},
		{"[::]:6881", "9.9.9.9", false},
		{"0.1.2.3:6881", "9.9.9.9", false},
		{"224.0.0.1:6881", "9.9.9.9", false},
		{"239.255.255.250:1900", "127.0.0.1", false},
		{"[ff02::1]:6881", "9.9.9.9", false},
		{"255.255.255.255:6881", "127.0.0.1", false},
		{"240.0.0.1:6881", "9.9.9.9", false},
		{"169.254.1.1:6881", "169.254.1.2", false},
		{"[fe80::1]:6881", "127.0.0.1", false},
		{"127.0.0.1:6881", "9.9.9.9", false},
		{"127.0.0.1:6881", "127.0.0.1", true},
		{"[::1]:6881", "127.0.0.1", true},
		{"10.0.0.1:6881", "9.9.9.9", false},
		{"10.0.0.1:6881", "192.168.1.1", true},
		{"192.168.1.5:6881", "127.0.0.1", true},
		{"[fd00::1]:6881", "2001:db8::1", false},
		{"[::ffff:127.0.0.1]:6881", "9.9.9.9", false},
		{"[::ffff:127.0.0.1]:6881", "::ffff:127.0.0.2", true},
		{"[::ffff:8.8.8.8]:6881", "9.9.9.9", true},
		{"8.8.8.8:6881", "127.0.0.1", true},
	}
	for _, tc := range tests {
		t.Run(tc.addr+" from "+tc.from, func(t *testing.T) {
			if got := Acceptable(ap(tc.addr), netip.MustParseAddr(tc.from)); got != tc.want {
				t.Fatalf("Acceptable = %v, want %v", got, tc.want)
			}
		})
	}
	if Acceptable(netip.AddrPort{}, netip.MustParseAddr("127.0.0.1")) {
		t.Fatal("invalid address accepted")
	}
}

func TestIntake(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	self := ap("127.0.0.1:6881")
	from := ap("127.0.0.1:7000")
	type step struct {
		at          time.Duration
		from        netip.AddrPort
		msg         wire.PexMsg
		added       []string
		dropped     []string
		refused     int
		tooFrequent bool
	}
	tests := []struct {
		name  string
		cfg   IntakeConfig
		steps []step
	}{
		{"filters own, sender, bad and duplicate addresses", IntakeConfig{}, []step{
			{from: from, msg: wire.PexMsg{
				Added:   peers("127.0.0.1:6881", "127.0.0.1:7000", "127.0.0.1:0", "224.0.0.1:1", "127.0.0.1:1", "[::ffff:127.0.0.1]:1", "[::ffff:127.0.0.1]:6881", "127.0.0.1:2"),
				Dropped: []netip.AddrPort{ap("127.0.0.1:3"), ap("0.0.0.0:3"), ap("[::ffff:127.0.0.1]:4")},
			}, added: []string{"127.0.0.1:1", "127.0.0.1:2"}, dropped: []string{"127.0.0.1:3", "127.0.0.1:4"}, refused: 6},
		}},
		{"flags are kept", IntakeConfig{}, []step{
			{from: from, msg: wire.PexMsg{Added: []wire.PexPeer{{Addr: ap("127.0.0.1:1"), Flags: wire.PexSeed}}}, added: []string{"127.0.0.1:1"}},
		}},
		{"a stranger cannot send us to loopback or the LAN", IntakeConfig{}, []step{
			{from: ap("8.8.8.8:6881"), msg: wire.PexMsg{Added: peers("127.0.0.1:1", "10.0.0.1:1", "9.9.9.9:1")}, added: []string{"9.9.9.9:1"}, refused: 2},
		}},
		{"per-message cap", IntakeConfig{}, []step{
			{from: from, msg: wire.PexMsg{Added: numbered(80, 1000)}, added: addrsOf(numbered(50, 1000)), refused: 30},
		}},
		{"per-minute budget refills at its rate", IntakeConfig{PerMessage: 50, PerMinute: 60}, []step{
			{at: 0, from: from, msg: wire.PexMsg{Added: numbered(50, 1000)}, added: addrsOf(numbered(50, 1000))},
			{at: time.Minute, from: from, msg: wire.PexMsg{Added: numbered(50, 2000)}, added: addrsOf(numbered(50, 2000))},
			// The bucket holds 60: 10 left + 60 refilled is 60, 50 spent.
			// 45 s refill 45: 55, and the per-message cap takes 50.
			{at: 105 * time.Second, from: from, msg: wire.PexMsg{Added: numbered(80, 3000)}, added: addrsOf(numbered(50, 3000)), refused: 30},
			// 5 left, 15 s refill 15: 20 of 50.
			{at: 120 * time.Second, from: from, msg: wire.PexMsg{Added: numbered(50, 4000)}, added: addrsOf(numbered(20, 4000)), refused: 30, tooFrequent: true},
		}},
		{"budgets are per peer", IntakeConfig{PerMessage: 50, PerMinute: 50}, []step{
			{at: 0, from: from, msg: wire.PexMsg{Added: numbered(50, 1000)}, added: addrsOf(numbered(50, 1000))},
			{at: time.Second, from: from, msg: wire.PexMsg{Added: numbered(5, 2000)}, refused: 5, tooFrequent: true},
			{at: time.Second, from: ap("127.0.0.2:7000"), msg: wire.PexMsg{Added: numbered(5, 2000)}, added: addrsOf(numbered(5, 2000))},
		}},
		{"too frequent is reported, still within the budget", IntakeConfig{}, []step{
			{at: 0, from: from, msg: wire.PexMsg{Added: peers("127.0.0.1:1")}, added: []string{"127.0.0.1:1"}},
			{at: 10 * time.Second, from: from, msg: wire.PexMsg{Added: peers("127.0.0.1:2")}, added: []string{"127.0.0.1:2"}, tooFrequent: true},
			{at: 10*time.Second + MinInterval, from: from, msg: wire.PexMsg{Added: peers("127.0.0.1:3")}, added: []string{"127.0.0.1:3"}},
		}},
		{"dropped capped at the per-message cap", IntakeConfig{PerMessage: 3}, []step{
			{from: from, msg: wire.PexMsg{Dropped: []netip.AddrPort{ap("127.0.0.1:1"), ap("127.0.0.1:2"), ap("127.0.0.1:3"), ap("127.0.0.1:4")}}, dropped: []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := NewIntake(tc.cfg)
			in.AddSelf(self)
			in.AddSelf(netip.AddrPort{})
			for i, st := range tc.steps {
				l := in.Accept(st.from, t0.Add(st.at), st.msg)
				if got := addrsOf(l.Added); !slices.Equal(got, st.added) {
					t.Fatalf("step %d: added %v, want %v", i, got, st.added)
				}
				if got := strs(l.Dropped); !slices.Equal(got, st.dropped) {
					t.Fatalf("step %d: dropped %v, want %v", i, got, st.dropped)
				}
				if l.Refused != st.refused || l.TooFrequent != st.tooFrequent {
					t.Fatalf("step %d: refused %d, too frequent %v; want %d, %v", i, l.Refused, l.TooFrequent, st.refused, st.tooFrequent)
				}
				for j, p := range l.Added {
					if want := st.msg.Added; p.Flags != flagsOf(want, p.Addr) {
						t.Fatalf("step %d: added[%d] flags %v", i, j, p.Flags)
					}
				}
			}
		})
	}
}

// flagsOf finds the flags sent with a, matching unmapped addresses.
func flagsOf(ps []wire.PexPeer, a netip.AddrPort) wire.PexFlags {
	for _, p := range ps {
		if normalize(p.Addr) == a {
			return p.Flags
		}
	}
	return 0xff
}

func TestIntakeForget(t *testing.T) {
	t0 := time.Unix(0, 0)
	in := NewIntake(IntakeConfig{PerMessage: 10, PerMinute: 10})
	from := ap("127.0.0.1:7000")
	if l := in.Accept(from, t0, wire.PexMsg{Added: numbered(10, 1000)}); len(l.Added) != 10 {
		t.Fatalf("added %d", len(l.Added))
	}
	if l := in.Accept(from, t0, wire.PexMsg{Added: numbered(10, 2000)}); len(l.Added) != 0 || !l.TooFrequent {
		t.Fatalf("spent budget: %+v", l)
	}
	in.Forget(from)
	if l := in.Accept(from, t0, wire.PexMsg{Added: numbered(10, 2000)}); len(l.Added) != 10 || l.TooFrequent {
		t.Fatalf("after Forget: %+v", l)
	}
}

// TestSenderToIntake passes what one side sends through the codec to the
// other side's intake, as two engines would.
func TestSenderToIntake(t *testing.T) {
	t0 := time.Unix(0, 0)
	s := NewSender(ap("127.0.0.1:7000"))
	in := NewIntake(IntakeConfig{})
	in.AddSelf(ap("127.0.0.1:7000"))
	connected := append(numbered(3, 1000), wire.PexPeer{Addr: ap("127.0.0.1:7000")})
	msg, ok := s.Next(t0, connected)
	if !ok {
		t.Fatal("nothing to send")
	}
	payload, err := wire.EncodePex(msg)
	if err != nil {
		t.Fatal(err)
	}
	got, err := wire.ParsePex(payload)
	if err != nil {
		t.Fatal(err)
	}
	l := in.Accept(ap("127.0.0.1:6881"), t0, got)
	if want := addrsOf(numbered(3, 1000)); !slices.Equal(addrsOf(l.Added), want) {
		t.Fatalf("learned %v, want %v", addrsOf(l.Added), want)
	}
	if l.Refused != 0 {
		t.Fatalf("refused %d", l.Refused)
	}
}
