package dht

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"btfs/internal/poll"
)

func TestStateFileRoundTrip(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nodes := privateDHT(t, 3)
	file := filepath.Join(t.TempDir(), "cache", "dht.state")
	b, err := Start(ctx, Config{Addr: "127.0.0.1:0", Bootstrap: []string{nodes[0].Addr().String()}, StateFile: file, Logger: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	// A lookup fills b's table with the nodes that answered, but not
	// necessarily with all of them: the library answers find_node and
	// get_peers only with nodes from the target's bucket and the farther
	// ones (table.closestNodes walks the buckets down from the target's),
	// so in a network of three one lookup may name just nodes[0]. Wait
	// until b knows at least two, adding the others by ping if need be.
	if _, err := findPeers(ctx, b, ihOf("fill"), 0); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes[1:] {
		b.AddNode(n.Addr())
	}
	poll.Until(t, 10*time.Second, "b's routing table to hold 2 nodes", func() bool { return b.Stats().Nodes >= 2 })
	id, addr := b.ID(), b.Addr()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	st, err := decodeState(raw)
	if err != nil || len(st.nodes) < 2 || st.id != id {
		t.Fatalf("saved state = %+v, %v; want b's ID and at least 2 nodes", st, err)
	}
	if matches, _ := filepath.Glob(filepath.Join(filepath.Dir(file), ".*tmp*")); len(matches) != 0 {
		t.Errorf("temporary files left behind: %v", matches)
	}

	// Restart with no bootstrap at all: only the state file links it.
	b2 := startNode(t, Config{Addr: addr.String(), StateFile: file})
	if b2.ID() != id {
		t.Errorf("restarted ID = %x, want the saved %x", b2.ID(), id)
	}
	if s := b2.Stats(); s.Nodes < 2 {
		t.Errorf("restarted Stats().Nodes = %d, want the saved nodes", s.Nodes)
	}
	ih := ihOf("round trip")
	if _, err := findPeers(ctx, nodes[1], ih, 3131); err != nil {
		t.Fatal(err)
	}
	waitFound(t, ctx, b2, ih, netip.AddrPortFrom(localhost, 3131))

	// A configured NodeID wins over the saved one.
	want := [20]byte{1, 2, 3}
	if b3 := startNode(t, Config{StateFile: file, NodeID: want}); b3.ID() != want {
		t.Errorf("ID with Config.NodeID = %x, want %x", b3.ID(), want)
	}
}

func TestStateFileDamaged(t *testing.T) {
	good := encodeState(&state{id: [20]byte{9}, nodes: []savedNode{
		{id: [20]byte{1}, addr: netip.MustParseAddrPort("127.0.0.1:1001")},
		{id: [20]byte{2}, addr: netip.MustParseAddrPort("[::1]:1002")},
		{id: [20]byte{3}, addr: netip.MustParseAddrPort("127.0.0.3:1003")},
	}})
	tests := []struct {
		name string
		data []byte
		// nodes is how many nodes decodeState keeps; -1: none, file rejected.
		nodes int
	}{
		{"intact", good, 3},
		{"empty", nil, -1},
		{"magic only", []byte(stateMagic), -1},
		{"wrong magic", append([]byte("btfsdht9"), good[8:]...), -1},
		{"garbage", bytes.Repeat([]byte{0xff, 0x00, 0x13}, 1000), -1},
		{"truncated in last record", good[:len(good)-5], 2},
		{"truncated in first record", good[:len(stateMagic)+20+10], 0},
		{"bad address length", append(append([]byte{}, good[:len(stateMagic)+20]...), append(make([]byte, 20), 7, 1, 2)...), 0},
		{"invalid entries skipped", encodeState(&state{nodes: []savedNode{
			{id: [20]byte{}, addr: netip.MustParseAddrPort("127.0.0.1:1")},
			{id: [20]byte{1}, addr: netip.MustParseAddrPort("127.0.0.1:0")},
			{id: [20]byte{1}, addr: netip.MustParseAddrPort("0.0.0.0:5")},
			{id: [20]byte{1}, addr: netip.MustParseAddrPort("127.0.0.1:5")},
		}}), 1},
		{"too large", append(append([]byte{}, good...), make([]byte, maxStateSize)...), -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := filepath.Join(t.TempDir(), "dht.state")
			if err := os.WriteFile(file, tc.data, 0o600); err != nil {
				t.Fatal(err)
			}
			st, err := readState(file)
			switch {
			case tc.nodes < 0 && st != nil:
				t.Errorf("readState = %+v, %v; want the file rejected", st, err)
			case tc.nodes >= 0 && (st == nil || len(st.nodes) != tc.nodes):
				t.Errorf("readState = %+v, %v; want %d nodes", st, err, tc.nodes)
			}
			if tc.name != "intact" && tc.name != "invalid entries skipped" && err == nil {
				t.Errorf("readState: no error for a damaged file")
			}
			// Whatever the file holds, the node starts, and Close
			// replaces the file with a valid one.
			n, err := Start(context.Background(), Config{Addr: "127.0.0.1:0", StateFile: file, Logger: testLog(t)})
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			if err := n.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if st, err := readState(file); err != nil || st == nil {
				t.Errorf("state after Close = %+v, %v; want a valid file", st, err)
			}
		})
	}
}

func TestStateFileMissingOrUnwritable(t *testing.T) {
	dir := t.TempDir()
	if st, err := readState(filepath.Join(dir, "absent")); st != nil || err != nil {
		t.Errorf("readState(missing) = %v, %v; want nil, nil", st, err)
	}
	// A directory where the file should be: Start works, Close reports it.
	file := filepath.Join(dir, "isdir")
	if err := os.Mkdir(file, 0o700); err != nil {
		t.Fatal(err)
	}
	n, err := Start(context.Background(), Config{Addr: "127.0.0.1:0", StateFile: file, Logger: testLog(t)})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := n.Close(); err == nil {
		t.Errorf("Close saved over a directory without error")
	} else if errors.Is(err, ErrClosed) {
		t.Errorf("Close = %v", err)
	}
}
