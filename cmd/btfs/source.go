package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

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

// metadataStatusEvery is how often the terminal status line is redrawn
// while the metadata is fetched.
const metadataStatusEvery = time.Second

// metadataStatus redraws "fetching metadata" on a terminal until ctx ends.
func metadataStatus(ctx context.Context, name string, w io.Writer, quiet bool) {
	if quiet || !isTerminal(w) {
		return
	}
	start := time.Now()
	tick := time.NewTicker(metadataStatusEvery)
	defer tick.Stop()
	for {
		fmt.Fprintf(w, "\r\033[Kfetching metadata of %s  %s", name, time.Since(start).Round(time.Second))
		select {
		case <-ctx.Done():
			fmt.Fprint(w, "\r\033[K")
			return
		case <-tick.C:
		}
	}
}
