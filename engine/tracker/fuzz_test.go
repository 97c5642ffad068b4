package tracker

import (
	"strings"
	"testing"

	"btfs/metainfo"
)

// checkReply holds every reply, whatever its source, to the promises the
// package makes about peers and durations.
func checkReply(t *testing.T, r *AnnounceResponse) {
	t.Helper()
	for _, p := range r.Peers {
		if !p.Addr().IsValid() || p.Addr().IsUnspecified() || p.Port() == 0 || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			t.Fatalf("unusable peer %v in a reply", p)
		}
	}
	if r.Interval < 0 || r.MinInterval < 0 || r.Seeders < 0 || r.Leechers < 0 {
		t.Fatalf("negative field in %+v", r)
	}
	if len(r.Warning) > maxReasonLen {
		t.Fatalf("warning of %d bytes", len(r.Warning))
	}
}

// FuzzParseHTTPResponse feeds arbitrary bodies to the HTTP reply parser,
// and to the walker (metainfo.Value and this package's readers on it)
// without the bencode check in front of it: neither may panic, and where
// the check passes the walker must agree with it on where the value ends.
func FuzzParseHTTPResponse(f *testing.F) {
	for _, s := range []string{
		"d8:completei0e10:downloadedi0e10:incompletei1e8:intervali1814e12:min intervali907e5:peers6:\x7f\x00\x00\x01\x1a\xe1e",
		"d8:intervali60e5:peersld2:ip9:127.0.0.27:peer id20:aaaaaaaaaaaaaaaaaaaa4:porti6881eeee",
		"d8:intervali60e5:peers0:6:peers618:\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x1a\xe1e",
		"d14:failure reason63:Requested download is not authorized for use with this tracker.e",
		"d10:tracker id3:abc15:warning message4:slowe",
		"d5:peers999999999999:",
		"<title>Invalid Request</title>",
		"d8:intervali-1ee",
		"llllllllllleeeeeeeeeee",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r, err := parseHTTPResponse("http://127.0.0.1/announce", body)
		if err == nil {
			checkReply(t, r)
		} else if fe, ok := err.(*FailureError); ok && len(fe.Reason) > maxReasonLen {
			t.Fatalf("failure reason of %d bytes", len(fe.Reason))
		}
		// The walker alone, on unchecked input.
		v := metainfo.ValueOf(body)
		readPeers(nil, v)
		dictPeer(v)
		werr := readTop(v)
		if metainfo.CheckBencode(body, metainfo.Limits{MaxSize: len(body), MaxDepth: 1 << 20}) == nil {
			if werr != nil {
				t.Fatalf("checker accepts %q but the walker does not end with it: %v", body, werr)
			}
		}
	})
}

// readTop reads v and the items of its top level, naming each: on a root,
// it fails unless the walker ends the value exactly where the input ends.
func readTop(v metainfo.Value) error {
	switch v.Kind() {
	case metainfo.KindInt:
		_, err := v.Int()
		return err
	case metainfo.KindString:
		_, err := v.Bytes()
		return err
	case metainfo.KindList:
		return v.Elems(func(_ int, elem metainfo.Value) error {
			_ = elem.Name()
			return nil
		})
	}
	return v.Entries(func(_ []byte, val metainfo.Value) error {
		_ = val.Name()
		return nil
	})
}

// FuzzParseUDPResponse feeds arbitrary datagrams to the BEP 15 reply
// parser, as read over IPv4 and over IPv6.
func FuzzParseUDPResponse(f *testing.F) {
	for _, b := range [][]byte{
		connectReply(1, 0x41727101980),
		announceReply(2, 1800, 1, 2, 127, 0, 0, 1, 0x1a, 0xe1),
		announceReply(3, 60, 0, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x1a, 0xe1),
		errorReply(4, "Connection ID missmatch.\n"),
		{0, 0, 0, 2, 0, 0, 0, 5, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3},
		{0, 0, 0, 1, 0, 0, 0, 5, 0xff, 0xff, 0xff, 0xff},
		[]byte(strings.Repeat("\xff", 40)),
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, addrLen := range []int{4, 16} {
			r, err := parseUDPReply(b, addrLen)
			if err != nil {
				continue
			}
			if r.announce != nil {
				checkReply(t, r.announce)
			}
			if len(r.message) > maxReasonLen {
				t.Fatalf("error message of %d bytes", len(r.message))
			}
			if len(r.scrape) > len(b)/12 {
				t.Fatalf("%d scrape results from %d bytes", len(r.scrape), len(b))
			}
		}
	})
}
