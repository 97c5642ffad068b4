package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"btfs/dht"
	"btfs/engine"
	"btfs/engine/transport"
	"btfs/engine/utp"
	"btfs/lsd"
	"btfs/metainfo"
	"btfs/picker"
	"btfs/portmap"
	"btfs/storagewrapper"
)

// swarmFlags are the flags every command that joins a swarm shares.
type swarmFlags struct {
	listen     string
	maxDown    string
	maxUp      string
	maxPeers   int
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

// join opens what a swarm needs besides the engine's config: the listener
// (now, so that fetching a magnet's metadata can announce its port; the
// engine takes it over), local service discovery (BEP 14) and the DHT
// node, on the same port in UDP, kept in stateFile between runs. A
// private torrent (BEP 27) uses neither (the engine checks again once a
// magnet's metadata says). closeFn stops them and closes the listener if
// no engine took it.
func (f *swarmFlags) join(ctx context.Context, cfg *engine.Config, private bool, stateFile string, log *slog.Logger) (closeFn func(), err error) {
	var closers []func()
	closeFn = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	if cfg.Listener == nil && cfg.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
		}
		cfg.Listener, cfg.Listen = ln, ""
		closers = append(closers, func() { ln.Close() })
	}
	if f.utp && cfg.UTP == nil {
		// uTP on the TCP port's number, in UDP (without a listener, a
		// port of its own for dialling); the DHT shares the socket.
		addr := ":0"
		if cfg.Listener != nil {
			addr = cfg.Listener.Addr().String()
		}
		sock, err := utp.Listen(addr, utp.Config{Logger: log.With("part", "utp")})
		if err != nil {
			log.Warn("uTP off: its UDP port is not free; peers that speak only uTP are out of reach", "err", err)
		} else {
			log.Info("uTP listening", "addr", sock.Addr())
			cfg.UTP = sock
			closers = append(closers, func() { sock.Close() })
			// Nothing has dialled yet: the transport gets the uTP
			// dialler, preferred to TCP.
			cfg.Transport = transport.New(transport.Config{
				Policy:  cfg.Transport.Policy(),
				Dialers: []transport.Dialer{transport.UTPDialer{Socket: sock}, transport.TCPDialer{}},
				Logger:  log,
			})
		}
	}
	if !f.noLSD && !private {
		// No multicast route (a host without a LAN, a test's namespace
		// with only loopback) is not an error: there is nobody to find.
		if svc, err := lsd.Start(ctx, lsd.Config{Logger: log.With("part", "lsd")}); err != nil {
			log.Info("local service discovery off", "err", err)
		} else {
			log.Info("local service discovery started")
			cfg.Local = svc
			closers = append(closers, func() { svc.Close() })
		}
	}
	if cfg.Listener != nil && !f.noPortMap {
		if m := startPortMap(ctx, cfg.Listener, log); m != nil {
			cfg.ExternalPort = m.ExternalPort
			closers = append(closers, func() { m.Close() })
		}
	}
	if f.noDHT || private {
		return closeFn, nil
	}
	bootstrap := []string(f.dhtBootstrap)
	if len(bootstrap) == 0 {
		bootstrap = dht.DefaultBootstrap
	}
	if stateFile != "" {
		if err := os.MkdirAll(filepath.Dir(stateFile), 0o755); err != nil {
			log.Warn("dht: the routing table will not be kept", "err", err)
			stateFile = ""
		}
	}
	dcfg := dht.Config{Addr: ":0", Bootstrap: bootstrap, StateFile: stateFile, Logger: log.With("part", "dht")}
	if cfg.UTP != nil {
		// One UDP socket for both: datagrams that are not uTP go to the DHT.
		dcfg.Conn = cfg.UTP.PacketConn()
	} else if cfg.Listener != nil {
		// The DHT's UDP port is the TCP port when it is free: one port
		// to open in a firewall.
		if host, port, err := net.SplitHostPort(cfg.Listener.Addr().String()); err == nil {
			dcfg.Addr = net.JoinHostPort(host, port)
		}
	}
	node, err := dht.Start(ctx, dcfg)
	if err != nil && dcfg.Conn == nil && dcfg.Addr != ":0" {
		if host, _, serr := net.SplitHostPort(dcfg.Addr); serr == nil {
			dcfg.Addr = net.JoinHostPort(host, "0")
			node, err = dht.Start(ctx, dcfg)
		}
	}
	if err != nil {
		closeFn()
		return nil, fmt.Errorf("dht: %w", err)
	}
	log.Info("dht started", "addr", node.Addr(), "bootstrap", len(bootstrap))
	cfg.Finder = node
	closers = append(closers, func() {
		if err := node.Close(); err != nil {
			log.Warn("dht: close", "err", err)
		}
	})
	return closeFn, nil
}

// startPortMap asks the router, in the background, to forward the
// listener's port in TCP and UDP (the DHT's, and uTP's) until Close; nil
// for a listener on loopback, which no router forwards to.
func startPortMap(ctx context.Context, ln net.Listener, log *slog.Logger) *portmap.Mapper {
	ap, err := netip.ParseAddrPort(ln.Addr().String())
	if err != nil || ap.Addr().IsLoopback() {
		return nil
	}
	m, err := portmap.Start(ctx, portmap.Config{Port: int(ap.Port()), Logger: log})
	if err != nil {
		log.Warn("no port mapping", "err", err)
		return nil
	}
	return m
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

// engineConfig turns the flags into an engine.Config.
func (f *swarmFlags) engineConfig(log *slog.Logger, mode picker.Mode) (engine.Config, error) {
	cfg := engine.Config{Logger: log, Listen: f.listen, MaxPeers: f.maxPeers, Mode: mode, NoWebSeeds: f.noWebSeeds}
	policy := transport.Prefer // flags not registered (the demo): the default
	var err error
	if f.encryption != "" {
		if policy, err = transport.ParsePolicy(f.encryption); err != nil {
			return cfg, fmt.Errorf("-encryption: %w", err)
		}
	}
	// One transport for the metadata fetch and the engine: what it
	// learns about peers (who refuses encryption) carries over.
	cfg.Transport = transport.New(transport.Config{Policy: policy, Logger: log})
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

// openWrapper wraps store for mi and resumes what it already holds,
// reporting progress for big torrents.
func openWrapper(ctx context.Context, mi *metainfo.MetaInfo, store storagewrapper.Store, log *slog.Logger) (*storagewrapper.Wrapper, error) {
	sw, err := storagewrapper.New(mi.Info, store, storagewrapper.Config{Logger: log})
	if err != nil {
		store.Close()
		return nil, err
	}
	start := time.Now()
	if err := sw.Resume(ctx); err != nil && ctx.Err() != nil {
		sw.Close()
		return nil, err
	} else if err != nil {
		log.Warn("some stored pieces could not be read; they will be downloaded", "err", err)
	}
	st := sw.Stats()
	log.Info("checked stored data", "verified", st.VerifiedPieces, "pieces", st.Pieces, "took", time.Since(start).Round(time.Millisecond))
	return sw, nil
}
