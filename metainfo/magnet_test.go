package metainfo

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const (
	testHex    = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a"
	testBase32 = "YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK" // the same 20 bytes
)

func testHash() Hash {
	var h Hash
	hex.Decode(h[:], []byte(testHex))
	return h
}

func TestParseMagnet(t *testing.T) {
	for _, tc := range []struct {
		name string
		uri  string
		want Magnet
	}{
		{"hex", "magnet:?xt=urn:btih:" + testHex, Magnet{InfoHash: testHash()}},
		{"upper-case hex", "magnet:?xt=urn:btih:" + strings.ToUpper(testHex), Magnet{InfoHash: testHash()}},
		{"base32", "magnet:?xt=urn:btih:" + testBase32, Magnet{InfoHash: testHash()}},
		{"lower-case base32", "magnet:?xt=urn:btih:" + strings.ToLower(testBase32), Magnet{InfoHash: testHash()}},
		{"everything", "MAGNET:?xt=urn:btih:" + testHex +
			"&dn=Big+Buck%20Bunny&tr=udp%3A%2F%2F127.0.0.1%3A6969&tr=http://127.0.0.1:6969/announce&tr=udp%3A%2F%2F127.0.0.1%3A6969" +
			"&x.pe=127.0.0.1:6881&x.pe=[::1]:0051413&x.pe=peer.example:80&ws=http://ignored/&&unknown=%41",
			Magnet{
				InfoHash:    testHash(),
				DisplayName: "Big Buck Bunny",
				Trackers:    []string{"udp://127.0.0.1:6969", "http://127.0.0.1:6969/announce"},
				Peers:       []string{"127.0.0.1:6881", "[::1]:51413", "peer.example:80"},
			}},
		{"same hash in both encodings", "magnet:?xt=urn:btih:" + testHex + "&xt=urn:btih:" + testBase32, Magnet{InfoHash: testHash()}},
		{"hybrid with btmh", "magnet:?xt=urn:btih:" + testHex + "&xt=urn:btmh:1220" + strings.Repeat("ab", 32), Magnet{InfoHash: testHash()}},
		{"other urn ignored", "magnet:?xt=urn:sha1:XYZ&xt=urn:btih:" + testHex, Magnet{InfoHash: testHash()}},
		{"first dn wins", "magnet:?dn=a&dn=b&xt=urn:btih:" + testHex, Magnet{InfoHash: testHash(), DisplayName: "a"}},
		{"empty tr dropped", "magnet:?tr=&xt=urn:btih:" + testHex, Magnet{InfoHash: testHash()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseMagnet(tc.uri)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*m, tc.want) {
				t.Errorf("ParseMagnet = %+v, want %+v", *m, tc.want)
			}
			back, err := ParseMagnet(m.String())
			if err != nil || !reflect.DeepEqual(back, m) {
				t.Errorf("ParseMagnet(%q) = %+v, %v; want %+v", m.String(), back, err, m)
			}
		})
	}
}

func TestParseMagnetErrors(t *testing.T) {
	for _, tc := range []struct {
		name, uri, want string
		is              error
	}{
		{"empty", "", "not a magnet link", nil},
		{"wrong scheme", "http:?xt=urn:btih:" + testHex, "not a magnet link", nil},
		{"no query", "magnet:xt=urn:btih:" + testHex, "no query", nil},
		{"no xt", "magnet:?dn=x", "magnet xt: missing", nil},
		{"empty xt", "magnet:?xt=", "magnet xt: missing", nil},
		{"two different btih", "magnet:?xt=urn:btih:" + testHex + "&xt=urn:btih:" + strings.Repeat("0", 40), "two different info-hashes", nil},
		{"short hex", "magnet:?xt=urn:btih:" + testHex[:39], "btih of 39 characters", nil},
		{"long hex", "magnet:?xt=urn:btih:" + testHex + "0", "btih of 41 characters", nil},
		{"bad hex", "magnet:?xt=urn:btih:" + strings.Repeat("g", 40), "is not hex", nil},
		{"bad base32", "magnet:?xt=urn:btih:" + strings.Repeat("1", 32), "is not base32", nil},
		{"base32 with newline", "magnet:?xt=urn:btih:" + testBase32[:31] + "%0A", "is not base32", nil},
		{"bad escape", "magnet:?xt=urn:btih:" + testHex + "&dn=%zz", "magnet dn: bad encoding", nil},
		{"bad key escape", "magnet:?%zz=1&xt=urn:btih:" + testHex, "magnet parameter 1: bad encoding", nil},
		{"btmh only", "magnet:?xt=urn:btmh:1220" + strings.Repeat("ab", 32), "only a v2 info-hash", ErrUnsupported},
		{"tracker without host", "magnet:?xt=urn:btih:" + testHex + "&tr=nothing", `tracker "nothing" has no scheme or host`, nil},
		{"tracker unparsable", "magnet:?xt=urn:btih:" + testHex + "&tr=http%3A%2F%2F%5B%3A%3A1", "magnet tr", nil},
		{"peer without port", "magnet:?xt=urn:btih:" + testHex + "&x.pe=127.0.0.1", "missing port", nil},
		{"peer port 0", "magnet:?xt=urn:btih:" + testHex + "&x.pe=127.0.0.1:0", "not in 1..65535", nil},
		{"peer port too big", "magnet:?xt=urn:btih:" + testHex + "&x.pe=127.0.0.1:65536", "not in 1..65535", nil},
		{"peer port signed", "magnet:?xt=urn:btih:" + testHex + "&x.pe=127.0.0.1:+1", "not in 1..65535", nil},
		{"peer bad host", "magnet:?xt=urn:btih:" + testHex + "&x.pe=a%20b:1", "neither an IP address nor a host name", nil},
		{"peer unbracketed v6", "magnet:?xt=urn:btih:" + testHex + "&x.pe=::1:80", "too many colons", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseMagnet(tc.uri)
			if err == nil {
				t.Fatalf("ParseMagnet = %+v, want an error", m)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseMagnet error = %q, want it to contain %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.is)
			}
		})
	}
}

func TestMagnetString(t *testing.T) {
	m := Magnet{InfoHash: testHash(), DisplayName: "a b&c", Trackers: []string{"udp://127.0.0.1:6969"}, Peers: []string{"[::1]:1"}}
	want := "magnet:?xt=urn:btih:" + testHex + "&dn=a+b%26c&tr=udp%3A%2F%2F127.0.0.1%3A6969&x.pe=%5B%3A%3A1%5D%3A1"
	if got := m.String(); got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// TestMagnetMetaInfo: the info dictionary must hash to the link's info-hash
// and parse; the link's trackers become one tier each.
func TestMagnetMetaInfo(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "f.bin"), []byte("some bytes of a file"), 0o644); err != nil {
		t.Fatal(err)
	}
	raw, err := Build(context.Background(), filepath.Join(dir, "f.bin"), BuildOptions{PieceLength: 16})
	if err != nil {
		t.Fatal(err)
	}
	mi, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	garbage := []byte("d4:name3:abce")
	tests := []struct {
		name    string
		hash    Hash
		info    []byte
		wantErr string
	}{
		{"good", mi.InfoHash, mi.InfoBytes, ""},
		{"wrong bytes", mi.InfoHash, append([]byte("d"), mi.InfoBytes[1:]...)[:len(mi.InfoBytes)-1], "hashes to"},
		{"right hash, not an info dictionary", Hash(sha1.Sum(garbage)), garbage, "metainfo"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := &Magnet{InfoHash: tc.hash, Trackers: []string{"http://127.0.0.1:1/announce", "udp://127.0.0.1:2"}}
			got, err := m.MetaInfo(tc.info)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.InfoHash != mi.InfoHash || got.Info.Name != "f.bin" || got.Info.TotalLength != mi.Info.TotalLength {
				t.Errorf("got %s %q %d", got.InfoHash, got.Info.Name, got.Info.TotalLength)
			}
			if want := [][]string{{"http://127.0.0.1:1/announce"}, {"udp://127.0.0.1:2"}}; !reflect.DeepEqual(got.AnnounceList, want) || got.Announce != want[0][0] {
				t.Errorf("trackers %q %q, want %q", got.Announce, got.AnnounceList, want)
			}
		})
	}
}
