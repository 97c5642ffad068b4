package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"

	"btfs/client"
	"btfs/control"
	"btfs/httpserve"
	"btfs/library"
	"btfs/metainfo"
	"btfs/stream"
)

// httpFlags are btfs mount's HTTP server flags.
type httpFlags struct {
	addr  string
	token string
}

func (f *httpFlags) register(fl interface {
	StringVar(p *string, name, value, usage string)
}) {
	fl.StringVar(&f.addr, "http", "", "serve the torrents over HTTP at `addr` (e.g. 127.0.0.1:8080; empty: off): files, status page, metrics, and in a library add/rm/ls; a non-loopback address requires a token")
	fl.StringVar(&f.token, "http-token", "", "require this `token` on every HTTP request (generated and printed when -http is not loopback and none is given)")
}

// startHTTP serves the client's torrents over HTTP when -http is set, and
// prints the address (with the token, if any) so that a user or a test
// finds it. ctl is the control endpoints' Controller; nil lists the
// torrents and adds nothing (a mount of one torrent). stop closes the
// server and every stream; it may be called again.
func startHTTP(ctx context.Context, hf httpFlags, c *client.Client, ctl httpserve.Controller,
	readers *stream.Registry, log *slog.Logger, stderr io.Writer) (stop func(), err error) {
	if hf.addr == "" {
		return func() {}, nil
	}
	token := hf.token
	if token == "" && !httpserve.IsLoopback(hf.addr) {
		token = httpserve.NewToken()
	}
	ln, err := net.Listen("tcp", hf.addr)
	if err != nil {
		return nil, fmt.Errorf("-http: %w", err)
	}
	torrents := clientTorrents{c}
	if ctl == nil {
		ctl = httpserve.ListFrom{Lister: torrents, Why: "btfs mount TORRENT serves the one torrent it mounted; mount a library (btfs mount MOUNTPOINT) to add and remove torrents"}
	}
	srv := httpserve.New(httpserve.Config{
		Torrents: torrents,
		Control:  ctl,
		Token:    token,
		Readers:  readers,
		Logger:   log,
	})
	base := "http://" + ln.Addr().String() + "/"
	url, status := base, base+"status"
	if token != "" {
		url += "?token=" + token
		status += "?token=" + token
	}
	fmt.Fprintf(stderr, "btfs: serving HTTP at %s\n", url)
	fmt.Fprintf(stderr, "btfs: status page at %s\n", status)
	log.Info("http: serving", "addr", ln.Addr().String())
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := httpserve.Serve(sctx, ln, srv); err != nil && !errors.Is(err, net.ErrClosed) {
			log.Error("http: stopped", "err", err)
		}
	})
	return func() { cancel(); wg.Wait() }, nil
}

// clientTorrents serves the client's torrents, whatever mounted them:
// every one whose metadata is known and storage open, asked anew at each
// request, so that a torrent added or removed while btfs runs (btfs add
// and rm, -watch, the control endpoints) is served or gone at once.
type clientTorrents struct{ c *client.Client }

func (l clientTorrents) Torrents() []httpserve.Torrent {
	var out []httpserve.Torrent
	for _, t := range l.c.List() {
		mi, data := t.MetaInfo(), t.Data()
		if mi == nil || data == nil {
			continue // a magnet link's metadata is on its way
		}
		select {
		case <-t.Done(): // failed: its storage is closed
			continue
		default:
		}
		out = append(out, httpserve.Torrent{
			InfoHash: mi.InfoHash, Info: mi.Info, Data: data, Stats: torrentStats(t), Gone: t.Stopping(),
		})
	}
	return out
}

// errNotRunning: a torrent's stats before its engine runs (its stored
// pieces being checked).
var errNotRunning = errors.New("the torrent's engine is not running yet")

// torrentStats is what /metrics and the status page show of t: its
// engine's counters and peers, and its cache's use.
func torrentStats(t *client.Torrent) func(ctx context.Context) (httpserve.Stats, error) {
	return func(ctx context.Context) (httpserve.Stats, error) {
		e := t.Engine()
		if e == nil {
			return httpserve.Stats{}, errNotRunning
		}
		st, err := e.Stats(ctx)
		if err != nil {
			return httpserve.Stats{}, err
		}
		hs := httpserve.Stats{
			Downloaded: st.Downloaded, Uploaded: st.Uploaded, Peers: st.Peers,
			PiecesVerified: st.PiecesDone, Pieces: st.NumPieces,
			HashFailures: st.HashFailures, Banned: st.Banned,
			DownloadRate: st.DownloadRate, UploadRate: st.UploadRate, Wants: st.Wants,
		}
		for _, p := range st.PerPeer {
			hs.PeerList = append(hs.PeerList, httpserve.Peer{
				Addr: p.Addr.String(), Client: p.Client, Downloaded: p.Downloaded, Uploaded: p.Uploaded,
				DownloadRate: p.DownloadRate, UploadRate: p.UploadRate,
				Encryption: p.Encryption, UTP: p.Network == "utp",
			})
		}
		if store := t.Cache(); store != nil {
			u := store.Usage()
			hs.Cache = &httpserve.CacheUse{Bytes: u.Bytes, Cap: u.Cap, Evictions: u.Evictions}
		}
		return hs, nil
	}
}

// libraryControl is a library as the HTTP control endpoints reach it:
// through the control socket's own handler (btfs add, rm and ls), so that
// both add, remove and list alike; it only translates the requests and
// the errors.
type libraryControl struct {
	h control.Handler
	c *client.Client
}

func (l libraryControl) Add(ctx context.Context, src httpserve.Source) (httpserve.TorrentInfo, error) {
	e, err := l.h.Add(ctx, control.Request{Op: "add", Torrent: src.Torrent, Source: src.URI})
	if err != nil {
		return httpserve.TorrentInfo{}, httpError(err)
	}
	return l.info(e, l.byHash()), nil
}

func (l libraryControl) Remove(ctx context.Context, ih metainfo.Hash) error {
	_, err := l.h.Remove(ctx, ih.String())
	return httpError(err)
}

func (l libraryControl) List(ctx context.Context) ([]httpserve.TorrentInfo, error) {
	es, err := l.h.List(ctx)
	if err != nil {
		return nil, httpError(err)
	}
	out := make([]httpserve.TorrentInfo, 0, len(es))
	ts := l.byHash()
	for _, e := range es {
		out = append(out, l.info(e, ts))
	}
	return out, nil
}

// byHash is the client's torrents by info-hash in hex, as entries name
// them.
func (l libraryControl) byHash() map[string]*client.Torrent {
	m := map[string]*client.Torrent{}
	for _, t := range l.c.List() {
		m[t.InfoHash().String()] = t
	}
	return m
}

// info is an entry of btfs ls with what the client knows beside (ts):
// the files and pieces of a torrent whose metadata is there.
func (l libraryControl) info(e control.Entry, ts map[string]*client.Torrent) httpserve.TorrentInfo {
	ti := httpserve.TorrentInfo{
		InfoHash: e.InfoHash, Name: e.Name, Length: e.Size, VerifiedBytes: e.Verified,
		DownloadRate: e.Down, UploadRate: e.Up, Peers: e.Peers, State: e.State,
	}
	if t := ts[e.InfoHash]; t != nil {
		if data := t.Data(); data != nil {
			served := httpserve.InfoOf(httpserve.Torrent{InfoHash: t.InfoHash(), Info: t.MetaInfo().Info, Data: data})
			ti.Files, ti.Pieces, ti.Verified = served.Files, served.Pieces, served.Verified
		}
	}
	return ti
}

// httpError marks a library's error with the httpserve error that says
// its HTTP status; its message stays.
func httpError(err error) error {
	var kind error
	switch {
	case err == nil:
		return nil
	case errors.Is(err, library.ErrBadSource):
		kind = httpserve.ErrBadSource
	case errors.Is(err, library.ErrNotFound):
		kind = httpserve.ErrUnknownTorrent
	case errors.Is(err, client.ErrExists):
		kind = httpserve.ErrExists
	default:
		return err
	}
	return statusError{kind: kind, err: err}
}

// statusError is err, also matching kind (errors.Is).
type statusError struct{ kind, err error }

func (e statusError) Error() string   { return e.err.Error() }
func (e statusError) Unwrap() []error { return []error{e.kind, e.err} }
