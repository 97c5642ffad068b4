package webseed

import (
	"net/url"
	"strings"

	"btfs/metainfo"
)

// Span is the part of one file's bytes that a range of the torrent
// covers: fetch Len bytes at Off of URL; a padding file's span (BEP 47)
// has no URL and reads as zeros.
type Span struct {
	URL     string
	Off     int64
	Len     int64
	FileLen int64 // the whole file's length
	Padding bool
}

// FileURL is the URL of file f of info at the webseed base, by BEP 19: a
// single-file torrent's URL is base itself unless base ends in '/', where
// the name is appended; a multi-file torrent's files are below
// base/name/, base taken as a directory. Every name and path component is
// percent-encoded.
func FileURL(base string, info *metainfo.Info, f int) string {
	if !info.MultiFile {
		if strings.HasSuffix(base, "/") {
			return base + url.PathEscape(info.Name)
		}
		return base
	}
	var b strings.Builder
	b.WriteString(base)
	if !strings.HasSuffix(base, "/") {
		b.WriteByte('/')
	}
	b.WriteString(url.PathEscape(info.Name))
	for _, c := range info.Files[f].Path {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(c))
	}
	return b.String()
}

// Spans splits the torrent's bytes [off, off+n) into per-file spans, in
// order, skipping empty files. A range past the end is cut at the end.
func Spans(base string, info *metainfo.Info, off, n int64) []Span {
	var out []Span
	end := off + n
	for i, f := range info.Files {
		if f.Length == 0 || f.Offset+f.Length <= off {
			continue
		}
		if f.Offset >= end {
			break
		}
		s := max(off, f.Offset)
		e := min(end, f.Offset+f.Length)
		sp := Span{Off: s - f.Offset, Len: e - s, FileLen: f.Length, Padding: f.Padding}
		if !f.Padding {
			sp.URL = FileURL(base, info, i)
		}
		out = append(out, sp)
	}
	return out
}
