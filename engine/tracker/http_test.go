package tracker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"
)

// httpTracker starts a tracker on 127.0.0.1 whose replies come from handle.
func httpTracker(t *testing.T, handle http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(handle)
	t.Cleanup(srv.Close)
	return srv
}

// newHTTPClient returns a client closed at the end of the test.
func newHTTPClient(t *testing.T, opts HTTPOptions) *HTTPClient {
	t.Helper()
	c := NewHTTPClient(opts)
	t.Cleanup(func() { c.Close() })
	return c
}

// testRequest is a request whose ids hold bytes that need escaping.
func testRequest() AnnounceRequest {
	var r AnnounceRequest
	for i := range r.InfoHash {
		r.InfoHash[i] = byte(i*13) ^ 0xA5
	}
	r.InfoHash[0], r.InfoHash[1], r.InfoHash[2], r.InfoHash[3] = ' ', '+', '&', '%'
	copy(r.PeerID[:], "-BT0001-\x00\xff=?#/ abcdef")
	r.Port, r.Uploaded, r.Downloaded, r.Left = 6881, 1<<40, 12345, 999
	r.Event, r.NumWant, r.Key, r.TrackerID = EventStarted, 50, 0xdeadbeef, "id &=+"
	return r
}

func TestHTTPAnnounceEncodesRequest(t *testing.T) {
	var got url.Values
	var rawQuery string
	srv := httpTracker(t, func(w http.ResponseWriter, r *http.Request) {
		got, rawQuery = r.URL.Query(), r.URL.RawQuery
		fmt.Fprint(w, "d8:intervali60ee")
	})
	c := newHTTPClient(t, HTTPOptions{})
	req := testRequest()
	if _, err := c.Announce(context.Background(), srv.URL+"/announce?passkey=s3cret", req); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"passkey":    "s3cret",
		"info_hash":  string(req.InfoHash[:]),
		"peer_id":    string(req.PeerID[:]),
		"port":       "6881",
		"uploaded":   "1099511627776",
		"downloaded": "12345",
		"left":       "999",
		"compact":    "1",
		"event":      "started",
		"numwant":    "50",
		"key":        "deadbeef",
		"trackerid":  "id &=+",
	}
	for k, v := range want {
		if got.Get(k) != v {
			t.Errorf("parameter %s = %q, want %q", k, got.Get(k), v)
		}
	}
	if strings.Contains(rawQuery, "+") {
		t.Errorf("query %q uses '+': trackers may read it as a space", rawQuery)
	}

	// EventNone and NumWant 0 leave their parameters out.
	req.Event, req.NumWant, req.TrackerID = EventNone, 0, ""
	if _, err := c.Announce(context.Background(), srv.URL+"/announce", req); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"event", "numwant", "trackerid", "passkey"} {
		if got.Has(k) {
			t.Errorf("parameter %s = %q sent, want it left out", k, got.Get(k))
		}
	}
}

func TestHTTPAnnounceRejectsBadRequests(t *testing.T) {
	c := newHTTPClient(t, HTTPOptions{})
	good := testRequest()
	for _, tc := range []struct {
		name string
		url  string
		mod  func(*AnnounceRequest)
		want string
	}{
		{"port", "http://127.0.0.1:1/announce", func(r *AnnounceRequest) { r.Port = 70000 }, "port"},
		{"negative left", "http://127.0.0.1:1/announce", func(r *AnnounceRequest) { r.Left = -1 }, "left"},
		{"event", "http://127.0.0.1:1/announce", func(r *AnnounceRequest) { r.Event = 9 }, "event"},
		{"scheme", "ftp://127.0.0.1:1/announce", func(*AnnounceRequest) {}, "scheme"},
		{"no host", "http:///announce", func(*AnnounceRequest) {}, "no host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := good
			tc.mod(&req)
			_, err := c.Announce(context.Background(), tc.url, req)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one naming %q", err, tc.want)
			}
		})
	}
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

func TestHTTPReplies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		body    string
		want    *AnnounceResponse
		wantErr string // substring; "failure:" marks a *FailureError
	}{
		{
			name: "compact peers, port 0 and 0.0.0.0 dropped",
			body: "d8:completei5e10:incompletei7e8:intervali1800e12:min intervali900e5:peers24:" +
				"\x7f\x00\x00\x02\x1a\xe1" + "\x7f\x00\x00\x03\x00\x00" + "\x00\x00\x00\x00\x1a\xe1" + "\x7f\x00\x00\x09\xff\xff" + "e",
			want: &AnnounceResponse{Interval: 1800 * time.Second, MinInterval: 900 * time.Second, Seeders: 5, Leechers: 7,
				Peers: []netip.AddrPort{ap("127.0.0.2:6881"), ap("127.0.0.9:65535")}},
		},
		{
			name: "dictionary peers",
			body: "d8:intervali60e5:peersl" +
				"d2:ip9:127.0.0.27:peer id20:aaaaaaaaaaaaaaaaaaaa4:porti6881ee" +
				"d2:ip3:::14:porti51413ee" +
				"d2:ip15:tracker.invalid4:porti1ee" + // a host name: not resolved
				"d2:ip9:127.0.0.44:porti0ee" + // port 0
				"d2:ip9:127.0.0.54:porti70000ee" + // port out of range
				"d2:ipi5e4:porti1ee" + // wrong type
				"i42e" + // not a dictionary
				"d2:ip16:::ffff:127.0.0.64:porti7ee" + // mapped: unmapped
				"ee",
			want: &AnnounceResponse{Interval: time.Minute,
				Peers: []netip.AddrPort{ap("127.0.0.2:6881"), ap("[::1]:51413"), ap("127.0.0.6:7")}},
		},
		{
			name: "peers6 with peers",
			body: "d8:intervali60e5:peers6:\x7f\x00\x00\x02\x1a\xe16:peers636:" +
				"\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x1a\xe1" +
				"\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00e",
			want: &AnnounceResponse{Interval: time.Minute,
				Peers: []netip.AddrPort{ap("127.0.0.2:6881"), ap("[2001:db8::1]:6881")}},
		},
		{
			name: "warning and tracker id",
			body: "d8:intervali60e5:peers0:10:tracker id3:abc15:warning message13:slow down\x01plze",
			want: &AnnounceResponse{Interval: time.Minute, TrackerID: "abc", Warning: "slow down plz"},
		},
		{
			name: "no peers at all", body: "d8:intervali60ee",
			want: &AnnounceResponse{Interval: time.Minute},
		},
		{name: "failure reason", body: "d14:failure reason12:unregisterede", wantErr: "failure: unregistered"},
		{name: "failure reason with error status", status: 403, body: "d14:failure reason6:bannede", wantErr: "failure: banned"},
		{name: "error status", status: 500, body: "oops", wantErr: "HTTP status 500"},
		{name: "hostile string length", body: "d5:peers999999999999:", wantErr: "not valid bencode"},
		{name: "truncated", body: "d8:intervali60e", wantErr: "not valid bencode"},
		{name: "trailing garbage", body: "d8:intervali60eeXX", wantErr: "not valid bencode"},
		{name: "deep nesting", body: strings.Repeat("l", 1000) + strings.Repeat("e", 1000), wantErr: "not valid bencode"},
		{name: "not a dictionary", body: "li1ee", wantErr: "want a dictionary"},
		{name: "empty body", body: "", wantErr: "not valid bencode"},
		{name: "html", body: "<title>Invalid Request</title>", wantErr: "not valid bencode"},
		{name: "compact peers of bad length", body: "d5:peers5:abcdee", wantErr: "not a multiple of 6"},
		{name: "peers6 of bad length", body: "d6:peers65:abcdee", wantErr: "not a multiple of 18"},
		{name: "peers of wrong type", body: "d5:peersi5ee", wantErr: "want a string or a list"},
		{name: "interval negative", body: "d8:intervali-5ee", wantErr: "out of range"},
		{name: "interval huge", body: "d8:intervali9223372036854775807ee", wantErr: "out of range"},
		{name: "interval wrong type", body: "d8:interval2:60e", wantErr: "want an integer"},
		{name: "failure reason wrong type", body: "d14:failure reasoni1ee", wantErr: "want a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httpTracker(t, func(w http.ResponseWriter, r *http.Request) {
				if tc.status != 0 {
					w.WriteHeader(tc.status)
				}
				fmt.Fprint(w, tc.body)
			})
			c := newHTTPClient(t, HTTPOptions{})
			got, err := c.Announce(context.Background(), srv.URL+"/announce", testRequest())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				var fe *FailureError
				if isFailure := errors.As(err, &fe); isFailure != strings.Contains(tc.wantErr, "failure:") {
					t.Fatalf("err = %#v: FailureError %v, want %v", err, isFailure, !isFailure)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("reply\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestHTTPOversizedBody(t *testing.T) {
	const limit = 1 << 20
	for _, tc := range []struct {
		name          string
		contentLength bool
	}{{"with content-length", true}, {"chunked", false}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httpTracker(t, func(w http.ResponseWriter, r *http.Request) {
				body := "d5:peers" + fmt.Sprint(limit) + ":" + strings.Repeat("\x7f\x00\x00\x01\x1a\xe1", limit/6+1)
				if tc.contentLength {
					w.Header().Set("Content-Length", fmt.Sprint(len(body)))
				}
				w.Write([]byte(body))
			})
			c := newHTTPClient(t, HTTPOptions{MaxBodySize: limit})
			_, err := c.Announce(context.Background(), srv.URL, testRequest())
			if err == nil || !strings.Contains(err.Error(), "larger than the limit") {
				t.Fatalf("err = %v, want the size limit", err)
			}
		})
	}
}

func TestHTTPSlowReplyHonoursContext(t *testing.T) {
	srv := httpTracker(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers; returns when the client goes
	})
	c := newHTTPClient(t, HTTPOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.Announce(ctx, srv.URL, testRequest())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's deadline", err)
	}
}

func TestHTTPRedirects(t *testing.T) {
	srv := httpTracker(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/old":
			http.Redirect(w, r, "/new?"+r.URL.RawQuery, http.StatusFound)
		case "/loop":
			http.Redirect(w, r, "/loop?"+r.URL.RawQuery, http.StatusFound)
		case "/new":
			if r.URL.Query().Get("info_hash") == "" {
				http.Error(w, "lost query", 400)
				return
			}
			fmt.Fprint(w, "d8:intervali77ee")
		}
	})
	c := newHTTPClient(t, HTTPOptions{MaxRedirects: 2})
	r, err := c.Announce(context.Background(), srv.URL+"/old", testRequest())
	if err != nil || r.Interval != 77*time.Second {
		t.Fatalf("through a redirect: %+v, %v", r, err)
	}
	if _, err := c.Announce(context.Background(), srv.URL+"/loop", testRequest()); err == nil || !strings.Contains(err.Error(), "redirects") {
		t.Fatalf("redirect loop: err = %v, want the redirect limit", err)
	}
	none := newHTTPClient(t, HTTPOptions{MaxRedirects: -1})
	if _, err := none.Announce(context.Background(), srv.URL+"/old", testRequest()); err == nil {
		t.Fatal("redirect followed with MaxRedirects -1")
	}
}

func TestEscapeBytes(t *testing.T) {
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	got, err := url.QueryUnescape(escapeBytes(all))
	if err != nil || got != string(all) {
		t.Fatalf("round trip of all bytes: %q, %v", got, err)
	}
	if e := escapeBytes([]byte("aZ09-._~ +")); e != "aZ09-._~%20%2B" {
		t.Fatalf("escapeBytes = %q", e)
	}
}
