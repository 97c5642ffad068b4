package stream

import (
	"path"
	"strings"
)

// DefaultMediaHeadTail is a sensible Config.HeadTail for a media file: 4 MiB
// at each end (or a piece, if pieces are longer).
const DefaultMediaHeadTail = 4 << 20

// mediaExts are the extensions of audio and video containers. Players read
// such a file's head and then its tail (the MP4 moov atom of a file written
// without faststart, Matroska cues, an AVI index, ID3v1 tags) before they
// play a single frame, so both ends are wanted as soon as the file is open.
var mediaExts = map[string]bool{
	// video
	".3gp": true, ".asf": true, ".avi": true, ".divx": true, ".f4v": true,
	".flv": true, ".m2ts": true, ".m4v": true, ".mkv": true, ".mov": true,
	".mp4": true, ".mpeg": true, ".mpg": true, ".mts": true, ".ogv": true,
	".rm": true, ".rmvb": true, ".ts": true, ".vob": true, ".webm": true,
	".wmv": true,
	// audio
	".aac": true, ".aif": true, ".aiff": true, ".ape": true, ".dsf": true,
	".flac": true, ".m4a": true, ".m4b": true, ".mka": true, ".mp3": true,
	".oga": true, ".ogg": true, ".opus": true, ".wav": true, ".wma": true,
	".wv": true,
}

// IsMedia reports whether a file name has a media extension (any case):
// a file whose Reader should want its head and tail (Config.HeadTail).
func IsMedia(name string) bool {
	return mediaExts[strings.ToLower(path.Ext(name))]
}

// headTail returns the ranges (file offsets) of a media file of size bytes
// that get Readahead priority while it is open: n = max(pieceLen, minLen)
// bytes at each end, or the whole file as one range when the two would
// meet. Nothing for an empty file.
func headTail(size, pieceLen, minLen int64) []span {
	if size <= 0 {
		return nil
	}
	n := max(pieceLen, minLen, 1)
	if n >= size-n {
		return []span{{0, size}}
	}
	return []span{{0, n}, {size - n, size}}
}
