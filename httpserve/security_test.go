package httpserve_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"btfs/httpserve"
	"btfs/metainfo"
)

// writeTemp writes data to a file name in a fresh temporary directory.
func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSecurity sends what a hostile page or peer on the network would:
// requests from another origin (a form post, a fetch, a preflight), a
// rebinding Host header, the token in the URL for a mutation, traversal
// plain and encoded, and ranges of 10^18, to every kind of endpoint. Each
// is refused (or, for a read, answered without a CORS header, which keeps
// the answer from the other origin's script), and no body ever comes from
// outside the file table.
func TestSecurity(t *testing.T) {
	tr := newTorrent(t, 16<<10, testFiles, testOrder)
	tr.fill(t)
	lib := &library{ts: map[metainfo.Hash]httpserve.TorrentInfo{}}
	magnet := "magnet:?xt=urn:btih:" + strings.Repeat("cd", 20)
	ih := tr.ih.String()
	file := "/t/" + ih + "/b.txt"
	type req struct {
		name, method, target, host, body string
		headers                          map[string]string
		want                             int
	}
	bearer := map[string]string{"Authorization": "Bearer tok"}
	with := func(h map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range h {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	const big = "1000000000000000000"
	for _, tc := range []req{
		// Another origin.
		{name: "add, same origin", method: "POST", target: "/api/torrents", body: magnet, headers: with(bearer, "Origin", "http://127.0.0.1:8080"), want: 201},
		{name: "add, no origin (curl)", method: "POST", target: "/api/torrents", body: magnet, headers: bearer, want: 201},
		{name: "add from another site", method: "POST", target: "/api/torrents", body: magnet, headers: with(bearer, "Origin", "http://evil.example"), want: 403},
		{name: "add from another port", method: "POST", target: "/api/torrents", body: magnet, headers: with(bearer, "Origin", "http://127.0.0.1:9999"), want: 403},
		{name: "add from an opaque origin", method: "POST", target: "/api/torrents", body: magnet, headers: with(bearer, "Origin", "null"), want: 403},
		{name: "add, https origin", method: "POST", target: "/api/torrents", body: magnet, headers: with(bearer, "Origin", "https://127.0.0.1:8080"), want: 403},
		{name: "add, cross-site fetch metadata", method: "POST", target: "/api/torrents", body: magnet, headers: with(bearer, "Sec-Fetch-Site", "cross-site"), want: 403},
		{name: "add, same-site fetch metadata", method: "POST", target: "/api/torrents", body: magnet, headers: with(bearer, "Sec-Fetch-Site", "same-site"), want: 403},
		{name: "remove from another site", method: "DELETE", target: "/api/torrents/" + strings.Repeat("cd", 20), headers: with(bearer, "Origin", "http://evil.example"), want: 403},
		{name: "a form post with the token in the URL", method: "POST", target: "/api/torrents?token=tok", body: magnet, headers: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, want: 401},
		{name: "add without the token", method: "POST", target: "/api/torrents", body: magnet, want: 401},
		{name: "add with a wrong token", method: "POST", target: "/api/torrents", body: magnet, headers: map[string]string{"Authorization": "Bearer nope"}, want: 401},
		{name: "preflight", method: "OPTIONS", target: "/api/torrents", headers: map[string]string{"Origin": "http://evil.example", "Access-Control-Request-Method": "DELETE"}, want: 401},
		{name: "preflight with the token", method: "OPTIONS", target: "/api/torrents", headers: with(bearer, "Origin", "http://evil.example", "Access-Control-Request-Method", "DELETE"), want: 405},
		{name: "read from another origin: served, no CORS", method: "GET", target: file, headers: with(bearer, "Origin", "http://evil.example"), want: 200},
		// A rebinding Host header, on every kind of endpoint.
		{name: "rebinding: file", method: "GET", target: file, host: "evil.example:8080", headers: bearer, want: 421},
		{name: "rebinding: status", method: "GET", target: "/status", host: "evil.example", headers: bearer, want: 421},
		{name: "rebinding: events", method: "GET", target: "/status/events", host: "evil.example", headers: bearer, want: 421},
		{name: "rebinding: metrics", method: "GET", target: "/metrics", host: "127.0.0.1.nip.io", headers: bearer, want: 421},
		{name: "rebinding: list", method: "GET", target: "/api/torrents", host: "attacker.test", headers: bearer, want: 421},
		{name: "rebinding: add", method: "POST", target: "/api/torrents", host: "attacker.test:8080", body: magnet, headers: with(bearer, "Origin", "http://attacker.test:8080"), want: 421},
		// Traversal.
		// ServeMux redirects an unclean path to its clean form, which is
		// then resolved like any other (/etc/passwd: 404).
		{name: "dot-dot", method: "GET", target: "/t/" + ih + "/../../etc/passwd", headers: bearer, want: 307},
		{name: "dot-dot cleaned", method: "GET", target: "/etc/passwd", headers: bearer, want: 404},
		{name: "encoded dot-dot", method: "GET", target: "/t/" + ih + "/%2e%2e/%2e%2e/etc/passwd", headers: bearer, want: 400},
		{name: "encoded slashes", method: "GET", target: "/t/" + ih + "/..%2f..%2fetc%2fpasswd", headers: bearer, want: 400},
		{name: "backslashes", method: "GET", target: "/t/" + ih + "/a/..%5c..%5cb.txt", headers: bearer, want: 400},
		{name: "NUL", method: "GET", target: "/t/" + ih + "/b.txt%00.mkv", headers: bearer, want: 400},
		{name: "absolute", method: "GET", target: "/t/" + ih + "//etc/passwd", headers: bearer, want: 307},
		{name: "absolute cleaned", method: "GET", target: "/t/" + ih + "/etc/passwd", headers: bearer, want: 404},
		// Ranges of 10^18.
		{name: "range from 10^18", method: "GET", target: file, headers: with(bearer, "Range", "bytes="+big+"-"), want: 416},
		{name: "range to 10^18", method: "GET", target: file, headers: with(bearer, "Range", "bytes=0-"+big), want: 206},
		{name: "suffix of 10^18", method: "GET", target: file, headers: with(bearer, "Range", "bytes=-"+big), want: 206},
		{name: "range past int64", method: "GET", target: file, headers: with(bearer, "Range", "bytes=99999999999999999999-"), want: 416},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := httpserve.New(httpserve.Config{Torrents: httpserve.Static{tr.served()}, Token: "tok", Control: lib})
			r := httptest.NewRequest(tc.method, tc.target, strings.NewReader(tc.body))
			r.Host = "127.0.0.1:8080"
			if tc.host != "" {
				r.Host = tc.host
			}
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, r)
			if rec.Code != tc.want {
				t.Errorf("status %d, want %d (%s)", rec.Code, tc.want, strings.TrimSpace(rec.Body.String()))
			}
			for k := range rec.Header() {
				if strings.HasPrefix(strings.ToLower(k), "access-control-") {
					t.Errorf("CORS header %s sent", k)
				}
			}
			if strings.HasPrefix(tc.target, "/t/") && rec.Code/100 == 2 && !strings.Contains(string(tr.file("b.txt")), rec.Body.String()) {
				t.Errorf("a body of %d bytes that is not b.txt's", rec.Body.Len())
			}
		})
	}
	// Without a token the mutating endpoints are off, even on loopback.
	s := httpserve.New(httpserve.Config{Torrents: httpserve.Static{tr.served()}, Control: lib})
	r := httptest.NewRequest("POST", "/api/torrents", strings.NewReader(magnet))
	r.Host = "127.0.0.1:8080"
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, r)
	if rec.Code != http.StatusForbidden {
		t.Errorf("add without a configured token: %d, want 403", rec.Code)
	}
}
