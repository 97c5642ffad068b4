package swarmtest

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TorrentVersion selects the BitTorrent version of a torrent made by
// MakeLibtorrentTorrent (BEP 52).
type TorrentVersion string

// The torrents libtorrent makes: create_torrent's flags v1_only, 0 and
// v2_only.
const (
	V1Only TorrentVersion = "v1"
	Hybrid TorrentVersion = "hybrid"
	V2Only TorrentVersion = "v2"
)

// createScript makes a torrent with libtorrent 2.0's create_torrent.
// argv: content path, torrent path, piece length, version, then web seed
// URLs. It prints one JSON line: the v1 and v2 info-hashes (hex, empty
// when the torrent has none) and libtorrent's magnet link for it.
const createScript = `
import json, os, sys
import libtorrent as lt

content, out, piece, version = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
flags = {'v1': lt.create_torrent.v1_only, 'hybrid': 0, 'v2': lt.create_torrent.v2_only}[version]
fs = lt.file_storage()
lt.add_files(fs, content)
ct = lt.create_torrent(fs, piece, flags=flags)
lt.set_piece_hashes(ct, os.path.dirname(content))
ct.set_creator('btfs swarmtest (libtorrent %s)' % lt.__version__)
for u in sys.argv[5:]:
    ct.add_url_seed(u)
data = lt.bencode(ct.generate())
with open(out, 'wb') as f:
    f.write(data)
ti = lt.torrent_info(data)
ih = ti.info_hashes()
print(json.dumps({'v1': str(ih.v1) if ih.has_v1() else '', 'v2': str(ih.v2) if ih.has_v2() else '',
                  'magnet': lt.make_magnet_uri(ti)}), flush=True)
`

// LibtorrentTorrent is a torrent made by MakeLibtorrentTorrent, with what
// libtorrent says of it.
type LibtorrentTorrent struct {
	// Path is the .torrent file, beside the content.
	Path string
	// V1 and V2 are libtorrent's info-hashes in hex: V1 the SHA-1, V2 the
	// SHA-256 (BEP 52); empty when the torrent has no such version.
	V1 string `json:"v1"`
	V2 string `json:"v2"`
	// Magnet is libtorrent's magnet link (btih and/or btmh).
	Magnet string `json:"magnet"`
}

// MakeLibtorrentTorrent writes the same content as MakeTorrent into dir
// and has python3-libtorrent make a torrent of it of the given version
// (hybrid and v2 torrents need a power-of-two piece length of 16 KiB or
// more; libtorrent pads the v1 files of a hybrid with BEP 47 padding
// files). webSeeds become url-list entries. It skips t without
// python3-libtorrent, as RequireLibtorrent does.
func MakeLibtorrentTorrent(t testing.TB, dir string, opts TorrentOptions, version TorrentVersion, webSeeds ...string) LibtorrentTorrent {
	t.Helper()
	RequireLibtorrent(t)
	root := writeContent(t, dir, &opts)
	var err error
	if root, err = filepath.Abs(root); err != nil {
		t.Fatal(err)
	}
	lt := LibtorrentTorrent{Path: root + "." + string(version) + ".torrent"}
	args := append([]string{"-c", createScript, root, lt.Path, fmt.Sprint(opts.PieceLength), string(version)}, webSeeds...)
	cmd := exec.Command(LibtorrentPython, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("swarmtest: libtorrent create_torrent: %v: %s", err, stderr.String())
	}
	if err := json.Unmarshal(out, &lt); err != nil {
		t.Fatalf("swarmtest: libtorrent create_torrent printed %q: %v", out, err)
	}
	return lt
}
