package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"btfs/client"
	"btfs/dht"
	"btfs/engine"
	"btfs/engine/transport"
	"btfs/metainfo"
	"btfs/picker"
)

// defaultMaxConnections is -max-connections's default: more than one
// torrent's -max-peers, so that a mount of one torrent is not capped by it.
const defaultMaxConnections = 400

// swarmFlags are the flags every command that joins a swarm shares.
type swarmFlags struct {
	listen     string
	maxDown    string
	maxUp      string
	maxPeers   int
	maxConns   int
	peers      multiFlag
	trackers   multiFlag
	noTrackers bool
	logFile    string
	logLevel   string
	quiet      bool
	// noDHT and dhtBootstrap: -no-dht, -dht-bootstrap.
	noDHT        bool
	dhtBootstrap multiFlag
	// encryption: -encryption prefer|require|off (MSE/PE).
	encryption string
	// utp: -utp, uTP on the listen port (shared with the DHT) and tried
	// first when dialling.
	utp bool
	// noLSD: -no-lsd.
	noLSD bool
	// noWebSeeds: -no-webseeds.
	noWebSeeds bool
	// noPortMap: -no-port-map.
	noPortMap bool
}

func (f *swarmFlags) register(fl *flag.FlagSet) {
	fl.StringVar(&f.listen, "listen", ":6881", "accept peers on this TCP `address` (\"\" to not listen)")
	fl.StringVar(&f.maxDown, "max-download-rate", "", "cap downloads at this `rate` in bytes/s, e.g. 5MB (empty: unlimited)")
	fl.StringVar(&f.maxUp, "max-upload-rate", "", "cap uploads at this `rate` in bytes/s, e.g. 500KB (empty: unlimited)")
	fl.IntVar(&f.maxPeers, "max-peers", engine.DefaultMaxPeers, "at most this `number` of peer connections")
	fl.IntVar(&f.maxConns, "max-connections", defaultMaxConnections, "at most this `number` of peer connections for the whole process (a library's torrents share them)")
	fl.Var(&f.peers, "peer", "also connect to this `host:port` (repeatable)")
	fl.Var(&f.trackers, "tracker", "announce to this `URL` instead of the torrent's trackers (repeatable)")
	fl.BoolVar(&f.noTrackers, "no-trackers", false, "contact no tracker (use -peer)")
	fl.StringVar(&f.logFile, "log-file", "", "write the log to this `file` (default: stderr)")
	fl.StringVar(&f.logLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	fl.BoolVar(&f.quiet, "quiet", false, "no status line; log warnings and errors only")
	fl.BoolVar(&f.noDHT, "no-dht", false, "do not use the DHT: trackers and -peer only (private torrents never use it)")
	fl.StringVar(&f.encryption, "encryption", "prefer", "MSE/PE `policy`: prefer (accept both; dial encrypted, fall back to plain), require (encrypted only), off (plain only)")
	fl.BoolVar(&f.utp, "utp", true, "speak uTP (BEP 29) too: accept it on the listen port's number in UDP (shared with the DHT) and try it before TCP when dialling")
	fl.BoolVar(&f.noLSD, "no-lsd", false, "do not use local service discovery (BEP 14 multicast on the LAN; private torrents never use it)")
	fl.BoolVar(&f.noWebSeeds, "no-webseeds", false, "do not fetch from the torrent's web seeds (BEP 19 url-list)")
	fl.BoolVar(&f.noPortMap, "no-port-map", false, "do not ask the router to forward the listen port (UPnP IGD, NAT-PMP)")
	fl.Var(&f.dhtBootstrap, "dht-bootstrap", "join the DHT through this `host:port` (repeatable; default: "+strings.Join(dht.DefaultBootstrap, ", ")+")")
}

// logger opens the log as the flags say; close it when done.
func (f *swarmFlags) logger(stderr io.Writer) (*slog.Logger, func(), error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return nil, nil, fmt.Errorf("-log-level: %w", err)
	}
	if f.quiet && level < slog.LevelWarn {
		level = slog.LevelWarn
	}
	w, closeFn := stderr, func() {}
	if f.logFile != "" {
		file, err := os.OpenFile(f.logFile, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			return nil, nil, fmt.Errorf("-log-file: %w", err)
		}
		w, closeFn = file, func() { file.Close() }
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level})), closeFn, nil
}

// clientConfig turns the flags into the client's config: the listener,
// uTP, the DHT (kept in cacheDir), LSD and the port mapping, the rate caps
// (for the whole process), the peers and trackers given. A process with
// only private torrents (BEP 27) starts neither the DHT nor LSD (the
// engine checks again once a magnet's metadata says).
func (f *swarmFlags) clientConfig(log *slog.Logger, mode picker.Mode, cacheDir string, private bool) (client.Config, error) {
	cfg := client.Config{
		Logger: log, CacheDir: cacheDir, Listen: f.listen, UTP: f.utp,
		DHT: !f.noDHT && !private, DHTBootstrap: f.dhtBootstrap,
		LSD: !f.noLSD && !private, PortMap: !f.noPortMap,
		MaxPeers: f.maxPeers, MaxConnections: f.maxConns, Mode: mode, NoWebSeeds: f.noWebSeeds,
	}
	var err error
	if f.encryption != "" { // flags not registered (the demo): the default
		if cfg.Policy, err = transport.ParsePolicy(f.encryption); err != nil {
			return cfg, fmt.Errorf("-encryption: %w", err)
		}
	}
	if cfg.MaxDownloadRate, err = parseRate("-max-download-rate", f.maxDown); err != nil {
		return cfg, err
	}
	if cfg.MaxUploadRate, err = parseRate("-max-upload-rate", f.maxUp); err != nil {
		return cfg, err
	}
	for _, p := range f.peers {
		ap, err := netip.ParseAddrPort(p)
		if err != nil {
			return cfg, fmt.Errorf("-peer %q: want IP:PORT: %w", p, err)
		}
		cfg.Peers = append(cfg.Peers, ap)
	}
	switch {
	case f.noTrackers:
		cfg.Trackers = [][]string{}
	case len(f.trackers) > 0:
		for _, t := range f.trackers {
			cfg.Trackers = append(cfg.Trackers, []string{t})
		}
	}
	return cfg, nil
}

// parseRate reads a humanized byte rate ("5MB", "500KiB"); "" is unlimited.
func parseRate(name, v string) (int64, error) {
	if v == "" || v == "0" {
		return 0, nil
	}
	n, err := humanize.ParseBytes(strings.TrimSuffix(strings.TrimSuffix(v, "/s"), "ps"))
	if err != nil {
		return 0, fmt.Errorf("%s %q: %w", name, v, err)
	}
	return int64(n), nil
}

// maxTorrentDownload caps a .torrent fetched over HTTP.
const maxTorrentDownload = 64 << 20

// torrentFetchTimeout bounds fetching a .torrent over HTTP (a var for the
// tests).
var torrentFetchTimeout = 30 * time.Second

// loadTorrent reads a torrent from a path or an http(s) URL.
func loadTorrent(ctx context.Context, arg string) (*metainfo.MetaInfo, error) {
	if !strings.HasPrefix(arg, "http://") && !strings.HasPrefix(arg, "https://") {
		return metainfo.Load(arg)
	}
	ctx, cancel := context.WithTimeout(ctx, torrentFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, arg, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", arg, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching %s: %s", arg, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxTorrentDownload+1))
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", arg, err)
	}
	if len(data) > maxTorrentDownload {
		return nil, fmt.Errorf("fetching %s: larger than %s", arg, humanize.IBytes(maxTorrentDownload))
	}
	return metainfo.Parse(data)
}
