package webseed

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"btfs/metainfo"
)

func multiInfo() *metainfo.Info {
	return &metainfo.Info{Name: "My Dir", MultiFile: true, PieceLength: 16, TotalLength: 40, Files: []metainfo.File{
		{Path: []string{"a b.txt"}, Length: 10, Offset: 0},
		{Path: []string{"sub", "empty"}, Length: 0, Offset: 10},
		{Path: []string{".pad", "6"}, Length: 6, Offset: 10, Padding: true},
		{Path: []string{"sub", "ü#?.bin"}, Length: 24, Offset: 16},
	}}
}

func TestFileURL(t *testing.T) {
	single := &metainfo.Info{Name: "x y.iso", Files: []metainfo.File{{Path: []string{"x y.iso"}, Length: 5}}}
	tests := []struct {
		base string
		info *metainfo.Info
		f    int
		want string
	}{
		{"http://h/path/file.iso", single, 0, "http://h/path/file.iso"},
		{"http://h/path/", single, 0, "http://h/path/x%20y.iso"},
		{"http://h/m/", multiInfo(), 0, "http://h/m/My%20Dir/a%20b.txt"},
		{"http://h/m", multiInfo(), 3, "http://h/m/My%20Dir/sub/%C3%BC%23%3F.bin"},
	}
	for _, tt := range tests {
		if got := FileURL(tt.base, tt.info, tt.f); got != tt.want {
			t.Errorf("FileURL(%q, file %d) = %q, want %q", tt.base, tt.f, got, tt.want)
		}
	}
}

func TestSpans(t *testing.T) {
	info := multiInfo()
	a, c := "http://h/My%20Dir/a%20b.txt", "http://h/My%20Dir/sub/%C3%BC%23%3F.bin"
	tests := []struct {
		name   string
		off, n int64
		want   []Span
	}{
		{"inside one file", 2, 5, []Span{{URL: a, Off: 2, Len: 5, FileLen: 10}}},
		{"across the empty file and the padding", 8, 12, []Span{{URL: a, Off: 8, Len: 2, FileLen: 10}, {Off: 0, Len: 6, FileLen: 6, Padding: true}, {URL: c, Off: 0, Len: 4, FileLen: 24}}},
		{"to the end", 30, 10, []Span{{URL: c, Off: 14, Len: 10, FileLen: 24}}},
		{"cut at the end", 38, 100, []Span{{URL: c, Off: 22, Len: 2, FileLen: 24}}},
	}
	for _, tt := range tests {
		if got := Spans("http://h/", info, tt.off, tt.n); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: Spans = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		v    string
		want time.Duration
	}{
		{"", 0},
		{"3", 3 * time.Second},
		{"0", 0},
		{"-5", 0},
		{"99999999", maxRetryAfter},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0},
		{"soon", 0},
	}
	for _, tt := range tests {
		if got := retryAfter(tt.v, now); got != tt.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tt.v, got, tt.want)
		}
	}
}

func TestContentRangeStart(t *testing.T) {
	tests := []struct {
		v    string
		want int64
		ok   bool
	}{
		{"bytes 100-199/1000", 100, true},
		{"bytes 0-0/*", 0, true},
		{"bytes */1000", 0, false},
		{"items 1-2/3", 0, false},
		{"bytes -1-2/3", 0, false},
	}
	for _, tt := range tests {
		if got, ok := contentRangeStart(tt.v); got != tt.want || ok != tt.ok {
			t.Errorf("contentRangeStart(%q) = %d, %v; want %d, %v", tt.v, got, ok, tt.want, tt.ok)
		}
	}
}

// TestStalledBody: a server that sends part of its answer and then nothing
// is given up after bodyIdle with a TempError; the bytes it did send were
// handed on.
func TestStalledBody(t *testing.T) {
	defer func(d time.Duration) { bodyIdle = d }(bodyIdle)
	bodyIdle = 200 * time.Millisecond
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Range", "bytes 0-99/100")
		w.WriteHeader(http.StatusPartialContent)
		w.Write(make([]byte, 40))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	var got int
	err := fetchSpan(context.Background(), srv.Client(), Span{URL: srv.URL, Len: 100, FileLen: 100}, 100, make([]byte, 64), func(p []byte) error {
		got += len(p)
		return nil
	})
	var te *TempError
	if !errors.As(err, &te) || got != 40 {
		t.Fatalf("fetchSpan = %v after %d bytes; want a TempError after 40", err, got)
	}
}
