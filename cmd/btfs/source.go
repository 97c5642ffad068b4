package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"

	"btfs/engine"
	"btfs/metainfo"
	"btfs/picker"
	"btfs/storagewrapper"
)

// source is what the user named: a torrent (a file or a URL) or a magnet
// link, whose info dictionary may still have to come from the swarm.
type source struct {
	// mi is the torrent; nil for a magnet link whose metadata is not known
	// yet.
	mi *metainfo.MetaInfo
	// magnet is the link; nil for a torrent file or URL.
	magnet *metainfo.Magnet
}

// infoHash is the torrent's info-hash, known in every case.
func (s source) infoHash() metainfo.Hash {
	if s.mi != nil {
		return s.mi.InfoHash
	}
	return s.magnet.InfoHash
}

// name is what to call it before the metadata says: the torrent's name, the
// link's dn, or the info-hash.
func (s source) name() string {
	switch {
	case s.mi != nil:
		return s.mi.Info.Name
	case s.magnet.DisplayName != "":
		return s.magnet.DisplayName
	}
	return s.magnet.InfoHash.String()
}

// loadSource reads a torrent from a path or an http(s) URL, or parses a
// magnet link.
func loadSource(ctx context.Context, arg string) (source, error) {
	if strings.HasPrefix(arg, "magnet:") {
		m, err := metainfo.ParseMagnet(arg)
		if err != nil {
			return source{}, err
		}
		return source{magnet: m}, nil
	}
	mi, err := loadTorrent(ctx, arg)
	return source{mi: mi}, err
}

// startMagnet starts the engine for a magnet link whose metadata is not
// known: it fetches the info dictionary from the swarm (the link's x.pe
// peers and -peer, its trackers or -tracker, the DHT) with the same
// connections it then downloads through. The caller waits for the info
// with t.Info, opens the storage for it and hands it over with give; the
// engine keeps its peers meanwhile. The status line says "fetching
// metadata" until the info is in.
func startMagnet(ctx context.Context, m *metainfo.Magnet, cfg engine.Config, log *slog.Logger, stderr io.Writer, quiet bool) (
	t *engine.Torrent, stop func(), give func(*storagewrapper.Wrapper, picker.Mode), err error) {
	mi := &metainfo.MetaInfo{InfoHash: m.InfoHash}
	for _, tr := range m.Trackers {
		mi.AnnounceList = append(mi.AnnounceList, []string{tr})
	}
	cfg.Peers = append(slices.Clone(cfg.Peers), resolvePeers(ctx, m.Peers, log)...)
	type opened struct {
		sw   *storagewrapper.Wrapper
		mode picker.Mode
	}
	storage := make(chan opened, 1)
	cfg.OpenStorage = func(ctx context.Context, _ *metainfo.MetaInfo) (*storagewrapper.Wrapper, picker.Mode, error) {
		select {
		case o := <-storage:
			return o.sw, o.mode, nil
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
	}
	log.Info("fetching metadata", "torrent", source{magnet: m}.name(), "peers", len(cfg.Peers), "trackers", len(m.Trackers), "dht", cfg.Finder != nil)
	if t, stop, err = startTorrent(ctx, mi, nil, cfg, log, stderr, quiet); err != nil {
		return nil, nil, nil, err
	}
	return t, stop, func(sw *storagewrapper.Wrapper, mode picker.Mode) { storage <- opened{sw, mode} }, nil
}

// resolvePeers turns x.pe's host:port strings into addresses; a name that
// does not resolve is logged and skipped.
func resolvePeers(ctx context.Context, peers []string, log *slog.Logger) []netip.AddrPort {
	var out []netip.AddrPort
	for _, p := range peers {
		if ap, err := netip.ParseAddrPort(p); err == nil {
			out = append(out, ap)
			continue
		}
		host, port, err := net.SplitHostPort(p)
		if err == nil {
			var pn uint16
			if _, err = fmt.Sscan(port, &pn); err == nil {
				var ips []netip.Addr
				ips, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host)
				for _, ip := range ips {
					out = append(out, netip.AddrPortFrom(ip.Unmap(), pn))
				}
			}
		}
		if err != nil {
			log.Warn("magnet peer skipped", "peer", p, "err", err)
		}
	}
	return out
}
