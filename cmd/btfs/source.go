package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"btfs/engine"
	"btfs/engine/magnet"
	"btfs/metainfo"
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

// metadataStatusEvery is how often the terminal status line is redrawn
// while the metadata is fetched.
const metadataStatusEvery = time.Second

// fetchMetadata gets a magnet link's info dictionary from the swarm: from
// the link's x.pe peers and -peer, its trackers (or -tracker), and the
// DHT. It returns the torrent and every peer address it learned, for the
// engine to start with. The status line says "fetching metadata" until
// then.
func fetchMetadata(ctx context.Context, m *metainfo.Magnet, cfg engine.Config, log *slog.Logger, stderr io.Writer, quiet bool) (*metainfo.MetaInfo, []netip.AddrPort, error) {
	mc := magnet.Config{
		InfoHash:  m.InfoHash,
		Peers:     append(append([]netip.AddrPort(nil), cfg.Peers...), resolvePeers(ctx, m.Peers, log)...),
		Trackers:  cfg.Trackers,
		PeerID:    cfg.PeerID,
		MaxPeers:  cfg.MaxPeers,
		Finder:    cfg.Finder, // the DHT, or nil
		Logger:    log,
		Transport: cfg.Transport, // the engine's: one policy, one memory of peers
	}
	if mc.Trackers == nil {
		for _, t := range m.Trackers {
			mc.Trackers = append(mc.Trackers, []string{t})
		}
	}
	if cfg.Listener != nil {
		if ap, err := netip.ParseAddrPort(cfg.Listener.Addr().String()); err == nil {
			mc.Port = int(ap.Port())
		}
	}
	name := m.DisplayName
	if name == "" {
		name = m.InfoHash.String()
	}
	log.Info("fetching metadata", "torrent", name, "peers", len(mc.Peers), "trackers", len(mc.Trackers), "dht", mc.Finder != nil)
	statusCtx, stopStatus := context.WithCancel(ctx)
	statusDone := make(chan struct{})
	go func() {
		defer close(statusDone)
		metadataStatus(statusCtx, name, stderr, quiet)
	}()
	start := time.Now()
	res, err := magnet.Fetch(ctx, mc)
	stopStatus()
	<-statusDone
	if err != nil {
		return nil, nil, fmt.Errorf("fetching the metadata of %s: %w", name, err)
	}
	mi, err := m.MetaInfo(res.Info)
	if err != nil {
		return nil, nil, err
	}
	log.Info("metadata fetched", "torrent", mi.Info.Name, "size", fmtBytes(mi.Info.TotalLength),
		"files", len(mi.Info.Files), "took", time.Since(start).Round(time.Millisecond), "peers", len(res.Peers))
	return mi, res.Peers, nil
}

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
