package dht

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
)

// The state file keeps the node's ID and its routing table across runs,
// so that a restart neither needs the bootstrap routers nor changes the
// node's place in the keyspace (BEP 5 asks for a stable ID). Format:
//
//	"btfsdht1"                 8-byte magic and version
//	id [20]byte                this node's ID
//	then per node:
//	  id [20]byte, n byte (4 or 16), ip [n]byte, port uint16 big-endian
//
// It is read bounded and leniently: a wrong magic drops the file, a bad
// or truncated record ends the list at the records read so far.
const (
	stateMagic = "btfsdht1"
	// maxStateSize bounds the read; a full table is ~1300 nodes of ~40 bytes.
	maxStateSize = 1 << 20
	// maxStateNodes bounds what is written and read.
	maxStateNodes = 4096
)

// savedNode is one routing-table entry in the state file.
type savedNode struct {
	// id is the node's ID and addr its UDP address.
	id   [20]byte
	addr netip.AddrPort
}

// state is the decoded state file.
type state struct {
	// id is the node ID that wrote the file.
	id [20]byte
	// nodes is its routing table.
	nodes []savedNode
}

// errStateFormat is wrapped by readState for a file that is not ours.
var errStateFormat = errors.New("not a btfs DHT state file")

// readState reads path. A missing file is (nil, nil); a damaged one
// returns what could be read (possibly nil) and an error saying why.
func readState(path string) (*state, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dht state: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStateSize+1))
	if err != nil {
		return nil, fmt.Errorf("dht state %s: %w", path, err)
	}
	if len(b) > maxStateSize {
		return nil, fmt.Errorf("dht state %s: larger than %d bytes", path, maxStateSize)
	}
	return decodeState(b)
}

// decodeState parses a state file's bytes (see the format above).
func decodeState(b []byte) (*state, error) {
	if len(b) < len(stateMagic)+20 || string(b[:len(stateMagic)]) != stateMagic {
		return nil, errStateFormat
	}
	st := &state{}
	copy(st.id[:], b[len(stateMagic):])
	b = b[len(stateMagic)+20:]
	for len(b) > 0 {
		if len(st.nodes) == maxStateNodes {
			return st, fmt.Errorf("%w: more than %d nodes", errStateFormat, maxStateNodes)
		}
		if len(b) < 21 {
			return st, fmt.Errorf("%w: truncated record", errStateFormat)
		}
		var n savedNode
		copy(n.id[:], b)
		ipLen := int(b[20])
		b = b[21:]
		if (ipLen != 4 && ipLen != 16) || len(b) < ipLen+2 {
			return st, fmt.Errorf("%w: bad record", errStateFormat)
		}
		ip, _ := netip.AddrFromSlice(b[:ipLen])
		n.addr = netip.AddrPortFrom(ip.Unmap(), binary.BigEndian.Uint16(b[ipLen:]))
		b = b[ipLen+2:]
		if validNode(n) {
			st.nodes = append(st.nodes, n)
		}
	}
	return st, nil
}

// validNode rejects entries no query can reach.
func validNode(n savedNode) bool {
	return n.id != [20]byte{} && n.addr.Port() != 0 && n.addr.Addr().IsValid() &&
		!n.addr.Addr().IsUnspecified() && !n.addr.Addr().IsMulticast()
}

// encodeState is decodeState's inverse.
func encodeState(st *state) []byte {
	var buf bytes.Buffer
	buf.WriteString(stateMagic)
	buf.Write(st.id[:])
	for i, n := range st.nodes {
		if i == maxStateNodes {
			break
		}
		buf.Write(n.id[:])
		ip := n.addr.Addr().Unmap().AsSlice()
		buf.WriteByte(byte(len(ip)))
		buf.Write(ip)
		buf.Write(binary.BigEndian.AppendUint16(nil, n.addr.Port()))
	}
	return buf.Bytes()
}

// writeState replaces path atomically: a temporary file in the same
// directory, synced, then renamed over it. A crash leaves the old file
// or the new one, never half of one.
func writeState(path string, st *state) (err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("dht state: %w", err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("dht state: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(encodeState(st)); err != nil {
		return fmt.Errorf("dht state: %w", err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("dht state: %w", err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("dht state: %w", err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("dht state: %w", err)
	}
	return nil
}
