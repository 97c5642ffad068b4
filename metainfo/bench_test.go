package metainfo

import (
	"bytes"
	"strconv"
	"testing"
)

// bigTorrent has 10 000 files of 1 MiB and 40 000 pieces of 256 KiB: a
// large but ordinary torrent of about 1 MB.
func bigTorrent() []byte {
	const nFiles, fileLen, pl = 10000, 1 << 20, 256 << 10
	files := make([]any, nFiles)
	for i := range files {
		files[i] = file(fileLen, "season "+strconv.Itoa(i/100), "episode "+strconv.Itoa(i)+".mkv")
	}
	return torrent(dict{
		{"files", files},
		{"name", "big"},
		{"piece length", pl},
		{"pieces", make([]byte, nFiles*fileLen/pl*20)},
	})
}

func BenchmarkCheckBencode(b *testing.B) {
	data := bigTorrent()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if err := CheckBencode(data, TorrentLimits); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	data := bigTorrent()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecodeAmplification shows what generic decoding costs on the
// worst shape (a list of empty dictionaries): compare B/op with the input
// size to choose Limits.MaxSize for Decode's callers.
func BenchmarkDecodeAmplification(b *testing.B) {
	data := append(append([]byte("l"), bytes.Repeat([]byte("de"), 1<<16)...), 'e')
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(data, TorrentLimits); err != nil {
			b.Fatal(err)
		}
	}
}
