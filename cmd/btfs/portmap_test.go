package main

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"btfs/internal/nattest"
	"btfs/internal/poll"
	"btfs/internal/swarmtest"
)

// handshakeScript dials argv[1]:argv[3], sends a BitTorrent handshake for
// the info-hash argv[2] (hex) and prints the info-hash of the answer.
const handshakeScript = `
import socket, sys
ih = bytes.fromhex(sys.argv[2])
s = socket.create_connection((sys.argv[1], int(sys.argv[3])), timeout=10)
s.sendall(b'\x13BitTorrent protocol' + bytes(8) + ih + b'-PY0001-123456789012')
buf = b''
while len(buf) < 68:
    d = s.recv(68 - len(buf))
    if not d:
        break
    buf += d
print(buf[28:48].hex())
`

// TestSeedBehindNAT: btfs seeds behind a real home router (miniupnpd, in
// namespaces of the test): it maps its listen port, TCP and UDP, in the
// router; a peer on the internet reaches it through the router's external
// address and gets its handshake; on exit the mappings are gone. With
// -no-port-map it never talks to the router.
func TestSeedBehindNAT(t *testing.T) {
	nattest.Require(t)
	lan := nattest.NewNetns(t)
	r := nattest.StartRouter(t, lan, true, true)
	dir := t.TempDir()
	torrentPath, mi := swarmtest.MakeTorrent(t, dir, swarmtest.TorrentOptions{Size: 1 << 20, PieceLength: 64 << 10, Seed: 90})
	const port = 40123
	seed := func(extra ...string) *proc {
		args := append([]string{"seed", "-no-dht", "-no-trackers", "-listen", nattest.LANClient + ":" + strconv.Itoa(port)}, extra...)
		args = append(args, torrentPath, dir)
		return startProc(t, lan.Command(btfsBin, args...), args)
	}
	stop := func(p *proc) {
		t.Helper()
		p.cmd.Process.Signal(syscall.SIGINT)
		p.wait(t, time.Minute)
	}
	handshake := func(ns *nattest.Netns, host string) {
		t.Helper()
		poll.UntilNil(t, 30*time.Second, "a handshake from "+host, func() error {
			out, err := ns.Command(swarmtest.LibtorrentPython, "-c", handshakeScript, host, mi.InfoHash.String(), strconv.Itoa(port)).CombinedOutput()
			if got := strings.TrimSpace(string(out)); err != nil || got != mi.InfoHash.String() {
				return fmt.Errorf("got %q: %v", got, err)
			}
			return nil
		})
	}

	p := seed()
	dnat := nattest.DNAT(port)
	poll.Until(t, 30*time.Second, "the two mappings in the router", func() bool { return strings.Count(r.Rules(t), dnat) == 2 })
	handshake(r.Internet, nattest.ExternalIP)
	poll.Until(t, 10*time.Second, "the mapping in the log", func() bool {
		return strings.Contains(p.out.String(), "port mapped") && strings.Contains(p.out.String(), "external="+nattest.ExternalIP+":"+strconv.Itoa(port))
	})
	stop(p)
	if rules := r.Rules(t); strings.Contains(rules, dnat) {
		t.Errorf("after btfs exited the router still has %q:\n%s", dnat, rules)
	}

	// -no-port-map: not a word to the router. The log is read after btfs
	// has exited, when nothing more can come.
	before := strings.Count(r.Log(), nattest.LANClient)
	if before == 0 {
		t.Fatalf("miniupnpd's log never names the LAN host, so it cannot tell whether btfs talked to it:\n%s", r.Log())
	}
	p = seed("-no-port-map")
	handshake(r.NS, nattest.LANClient)
	stop(p)
	if after := strings.Count(r.Log(), nattest.LANClient); after != before {
		t.Errorf("with -no-port-map btfs talked to the router:\n%s", r.Log())
	}
}
