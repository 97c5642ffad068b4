package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"

	"btfs/cache"
	"btfs/engine"
	"btfs/httpserve"
	"btfs/metainfo"
	"btfs/storagewrapper"
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
	fl.StringVar(&f.addr, "http", "", "serve the files over HTTP at `addr` (e.g. 127.0.0.1:8080; empty: off); a non-loopback address requires a token")
	fl.StringVar(&f.token, "http-token", "", "require this `token` on every HTTP request (generated and printed when -http is not loopback and none is given)")
}

// startHTTP serves the mounted torrent over HTTP when -http is set, and
// prints the address (with the token, if any) so that a user or a test
// finds it. stop closes the server and every stream; it may be called
// again.
func startHTTP(ctx context.Context, hf httpFlags, mi *metainfo.MetaInfo, sw *storagewrapper.Wrapper, t *engine.Torrent,
	store *cache.Store, readers *stream.Registry, log *slog.Logger, stderr io.Writer) (stop func(), err error) {
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
	torrents := httpserve.Static{{
		InfoHash: mi.InfoHash, Info: mi.Info, Data: sw,
		Stats: func(ctx context.Context) (httpserve.Stats, error) {
			st, err := t.Stats(ctx)
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
			if store != nil {
				u := store.Usage()
				hs.Cache = &httpserve.CacheUse{Bytes: u.Bytes, Cap: u.Cap, Evictions: u.Evictions}
			}
			return hs, nil
		},
	}}
	srv := httpserve.New(httpserve.Config{
		Torrents: torrents,
		// One mount serves one torrent: the control endpoints list it;
		// adding and removing answer 501 until a client owns many.
		Control: httpserve.ListFrom{Lister: torrents, Why: "btfs mount serves the one torrent it mounted; mount another with btfs mount"},
		Token:   token,
		Readers: readers,
		Logger:  log,
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
