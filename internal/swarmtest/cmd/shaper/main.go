// Command shaper runs a shaped swarm's proxy (internal/swarmtest/shaper)
// for bench/run's WAN mode, in the bench's private network namespace.
//
//	shaper -profile NAME -describe          print the profile as JSON, exit
//	shaper -profile NAME -control ADDR      shape until SIGTERM/SIGINT
//
// While it runs, an HTTP endpoint on ADDR (127.0.0.1:PORT) answers:
//
//	GET  /stats     every seeder's counters: {"127.0.0.10": {"out": B, "in": B, ...}}
//	POST /events    start the profile's hostile events (stall, departure) from now
//	POST /reset     stop the events, bring every seeder back, end every stall
//
// The churning seeder, if the profile has one, comes and goes from the start.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"btfs/internal/swarmtest/shaper"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "shaper:", err)
		os.Exit(1)
	}
}

// seederJSON is a seeder as the bench reads it.
type seederJSON struct {
	Kind  string  `json:"kind"`
	Addr  string  `json:"addr"`
	RTTms float64 `json:"rtt_ms"`
	Rate  float64 `json:"rate"`
}

// describe is the profile as the bench reads it.
func describe(p shaper.Profile) any {
	var ss []seederJSON
	for _, s := range p.Seeders {
		ss = append(ss, seederJSON{s.Kind, s.Addr.String(), float64(s.Link.RTT) / 1e6, s.Link.RateOut})
	}
	maxRTT := time.Duration(0)
	for _, s := range p.Seeders {
		if s.Addr != p.Leave && s.Addr != p.Stall {
			maxRTT = max(maxRTT, s.Link.RTT)
		}
	}
	return map[string]any{"name": p.Name, "header": p.String(), "swarm_rate": p.SwarmRate(),
		"seeders": ss, "leave_at": p.LeaveAt.Seconds(), "stall_at": p.StallAt.Seconds(),
		"max_rtt_remaining": maxRTT.Seconds()}
}

func run() error {
	name := flag.String("profile", "easy", "the profile (easy, tight, slow, hostile)")
	desc := flag.Bool("describe", false, "print the profile as JSON and exit")
	control := flag.String("control", "127.0.0.1:0", "the control endpoint's address (127.0.0.1:PORT)")
	verbose := flag.Bool("v", false, "log every proxied connection")
	flag.Parse()
	p, err := shaper.Lookup(*name)
	if err != nil {
		return err
	}
	if *desc {
		return json.NewEncoder(os.Stdout).Encode(describe(p))
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	s, err := shaper.Start(ctx, shaper.Config{Peers: p.Links(), Log: log})
	if err != nil {
		return err
	}
	defer s.Close()
	ln, err := net.Listen("tcp4", *control)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		if err := s.RunChurn(ctx, p); err != nil {
			log.Error("churn", "err", err)
		}
	})
	var mu sync.Mutex
	evCancel := func() {}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		out := map[string]any{}
		for a, st := range s.Stats() {
			out[a.String()] = map[string]any{"out": st.Out, "in": st.In, "conns": st.Conns,
				"total": st.Total, "down": st.Down, "stalled": st.Stalled}
		}
		_ = json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("POST /events", func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		evCancel()
		ectx, cancel := context.WithCancel(ctx)
		evCancel = cancel
		wg.Go(func() {
			if err := s.RunEvents(ectx, p); err != nil {
				log.Error("events", "err", err)
			}
		})
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("POST /reset", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		evCancel()
		mu.Unlock()
		if err := s.Reset(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	// The bench reads the control address from the first line.
	fmt.Printf("control %s\n", ln.Addr())
	fmt.Printf("proxy %s\n", s.Addr())
	log.Info("shaping", "profile", p.String())
	go func() {
		<-ctx.Done()
		mu.Lock()
		evCancel()
		mu.Unlock()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
