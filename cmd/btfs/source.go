package main

import (
	"context"
	"io"
	"log/slog"
	"strings"

	"btfs/client"
	"btfs/metainfo"
)

// loadSource reads a torrent from a path or an http(s) URL, or parses a
// magnet link.
func loadSource(ctx context.Context, arg string) (client.Source, error) {
	if strings.HasPrefix(arg, "magnet:") {
		m, err := metainfo.ParseMagnet(arg)
		if err != nil {
			return client.Source{}, err
		}
		return client.Source{Magnet: m}, nil
	}
	mi, err := loadTorrent(ctx, arg)
	return client.Source{MetaInfo: mi}, err
}

// metadataStatus starts the status line of a magnet link's engine, which
// runs before the metadata is known: "fetching metadata n/m pieces" until
// it is, then the download's progress. When the metadata came from the
// cache (the torrent is attached before any engine runs) it starts
// nothing and reports false.
func metadataStatus(ctx context.Context, t *client.Torrent, log *slog.Logger, w io.Writer, quiet bool) (stop func(), started bool) {
	select {
	case <-t.Running():
		select {
		case <-t.Attached(): // from the cache: the caller's usual status line
			return func() {}, false
		default:
		}
		return startStatus(ctx, t.Engine(), log, w, quiet), true
	case <-t.Attached():
	case <-t.Done():
	case <-ctx.Done():
	}
	return func() {}, false
}
