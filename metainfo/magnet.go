package metainfo

import (
	"crypto/sha1"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// Magnet is a parsed magnet link (BEP 9): enough to find peers and fetch
// the info dictionary from them.
type Magnet struct {
	// InfoHash is the v1 info-hash (xt=urn:btih:).
	InfoHash Hash
	// DisplayName is the suggested name (dn); may be empty. The name that
	// counts is the one in the metadata fetched later.
	DisplayName string
	// Trackers are the tracker URLs (tr), in link order, without
	// duplicates.
	Trackers []string
	// Peers are peer addresses (x.pe) as host:port, IPv6 hosts bracketed.
	Peers []string
}

const btihPrefix, btmhPrefix = "urn:btih:", "urn:btmh:"

// ParseMagnet parses a magnet URI. It needs exactly one v1 info-hash
// (xt=urn:btih: as 40 hex or 32 base32 characters; the same hash given
// twice is fine, two different ones are an error); a link with only a v2
// hash (urn:btmh:) is ErrV2Only. Tracker URLs must have a scheme and
// a host; x.pe peers must be host:port with a port in 1..65535. Unknown
// parameters are ignored.
func ParseMagnet(uri string) (*Magnet, error) {
	scheme, rest, ok := strings.Cut(uri, ":")
	if !ok || !strings.EqualFold(scheme, "magnet") {
		return nil, errors.New(`metainfo: magnet: not a magnet link (want "magnet:?...")`)
	}
	query, ok := strings.CutPrefix(rest, "?")
	if !ok {
		return nil, errors.New(`metainfo: magnet: no query after "magnet:"`)
	}
	m := &Magnet{}
	var haveV1, haveV2, haveName bool
	seen := map[string]bool{}
	for i, param := range strings.Split(query, "&") {
		if param == "" {
			continue
		}
		rawKey, rawValue, _ := strings.Cut(param, "=")
		key, err := url.QueryUnescape(rawKey)
		if err != nil {
			return nil, fieldErr(fmt.Sprintf("magnet parameter %d", i+1), "bad encoding: %w", err)
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			return nil, fieldErr("magnet "+key, "bad encoding: %w", err)
		}
		switch key {
		case "xt":
			switch lower := strings.ToLower(value); {
			case strings.HasPrefix(lower, btihPrefix):
				h, err := decodeBTIH(value[len(btihPrefix):])
				if err != nil {
					return nil, fieldErr("magnet xt", "%w", err)
				}
				if haveV1 && h != m.InfoHash {
					return nil, fieldErr("magnet xt", "two different info-hashes, %s and %s", m.InfoHash, h)
				}
				m.InfoHash, haveV1 = h, true
			case strings.HasPrefix(lower, btmhPrefix):
				haveV2 = true
			}
		case "dn":
			if !haveName {
				m.DisplayName, haveName = value, true
			}
		case "tr":
			if value == "" || seen["tr "+value] {
				continue
			}
			if err := checkTrackerURL(value); err != nil {
				return nil, fieldErr("magnet tr", "%w", err)
			}
			seen["tr "+value] = true
			m.Trackers = append(m.Trackers, value)
		case "x.pe":
			peer, err := checkPeerAddr(value)
			if err != nil {
				return nil, fieldErr("magnet x.pe", "%w", err)
			}
			if !seen["pe "+peer] {
				seen["pe "+peer] = true
				m.Peers = append(m.Peers, peer)
			}
		}
	}
	if !haveV1 {
		if haveV2 {
			return nil, &FieldError{Field: "magnet xt", Err: fmt.Errorf("%w (only a v2 info-hash, urn:btmh:, and no v1 urn:btih:)", ErrV2Only)}
		}
		return nil, fieldErr("magnet xt", "missing (want xt=urn:btih:...)")
	}
	return m, nil
}

// String returns the link in a form that ParseMagnet reads back to the
// same Magnet: hex info-hash, then dn, tr and x.pe, query-escaped.
func (m *Magnet) String() string {
	var b strings.Builder
	b.WriteString("magnet:?xt=" + btihPrefix + m.InfoHash.String())
	if m.DisplayName != "" {
		b.WriteString("&dn=" + url.QueryEscape(m.DisplayName))
	}
	for _, t := range m.Trackers {
		b.WriteString("&tr=" + url.QueryEscape(t))
	}
	for _, p := range m.Peers {
		b.WriteString("&x.pe=" + url.QueryEscape(p))
	}
	return b.String()
}

// MetaInfo makes the torrent of the link from its info dictionary (fetched
// from peers with BEP 9, or read back from the cache): the bytes must hash
// to the link's info-hash and pass ParseInfo.
func (m *Magnet) MetaInfo(info []byte) (*MetaInfo, error) {
	if h := Hash(sha1.Sum(info)); h != m.InfoHash {
		return nil, fmt.Errorf("metainfo: info dictionary hashes to %s, not the link's %s", h, m.InfoHash)
	}
	parsed, err := ParseInfo(info)
	if err != nil {
		return nil, err
	}
	mi := m.Torrent()
	mi.Info, mi.InfoBytes = parsed, append([]byte(nil), info...)
	return mi, nil
}

// Torrent is the link's torrent before its info dictionary is known (Info
// nil): the info-hash and the trackers, for an engine that fetches the
// dictionary itself. The link's trackers become one tier each, in link
// order (BEP 12: all tried, first answering kept).
func (m *Magnet) Torrent() *MetaInfo {
	mi := &MetaInfo{InfoHash: m.InfoHash}
	for _, t := range m.Trackers {
		mi.AnnounceList = append(mi.AnnounceList, []string{t})
	}
	if len(m.Trackers) > 0 {
		mi.Announce = m.Trackers[0]
	}
	return mi
}

// decodeBTIH reads a v1 info-hash in hex (40 characters) or base32 (32).
func decodeBTIH(s string) (Hash, error) {
	var h Hash
	switch len(s) {
	case 40:
		if _, err := hex.Decode(h[:], []byte(s)); err != nil {
			return Hash{}, fmt.Errorf("btih %q is not hex: %w", s, err)
		}
	case 32:
		b, err := base32.StdEncoding.DecodeString(strings.ToUpper(s))
		if err == nil && len(b) != len(h) { // the decoder skips '\r' and '\n'
			err = fmt.Errorf("%d bytes, want %d", len(b), len(h))
		}
		if err != nil {
			return Hash{}, fmt.Errorf("btih %q is not base32: %w", s, err)
		}
		copy(h[:], b)
	default:
		return Hash{}, fmt.Errorf("btih of %d characters, want 40 (hex) or 32 (base32)", len(s))
	}
	return h, nil
}

func checkTrackerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return err
	}
	if u.Scheme == "" || u.Host == "" {
		return fmt.Errorf("tracker %q has no scheme or host", s)
	}
	return nil
}

// checkPeerAddr validates host:port and returns it in canonical form.
func checkPeerAddr(s string) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("peer %q: %w", s, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 || port[0] == '+' {
		return "", fmt.Errorf("peer %q: port %q is not in 1..65535", s, port)
	}
	if net.ParseIP(host) == nil && !validHostname(host) {
		return "", fmt.Errorf("peer %q: host %q is neither an IP address nor a host name", s, host)
	}
	return net.JoinHostPort(host, strconv.FormatUint(p, 10)), nil
}

// validHostname accepts DNS names: labels of letters, digits, '-' and
// '_', separated by dots, 253 characters at most.
func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
