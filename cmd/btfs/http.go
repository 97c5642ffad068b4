package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"

	"btfs/engine"
	"btfs/httpserve"
	"btfs/metainfo"
	"btfs/storagewrapper"
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
	log *slog.Logger, stderr io.Writer) (stop func(), err error) {
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
	srv := httpserve.New(httpserve.Config{
		Torrents: httpserve.Static{{
			InfoHash: mi.InfoHash, Info: mi.Info, Data: sw,
			Stats: func(ctx context.Context) (httpserve.Stats, error) {
				st, err := t.Stats(ctx)
				return httpserve.Stats{
					Downloaded: st.Downloaded, Uploaded: st.Uploaded, Peers: st.Peers,
					PiecesVerified: st.PiecesDone, Pieces: st.NumPieces,
					HashFailures: st.HashFailures, Banned: st.Banned,
				}, err
			},
		}},
		Token:  token,
		Logger: log,
	})
	url := "http://" + ln.Addr().String() + "/"
	if token != "" {
		url += "?token=" + token
	}
	fmt.Fprintf(stderr, "btfs: serving HTTP at %s\n", url)
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
