package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/dustin/go-humanize"
	"golang.org/x/sys/unix"

	"btfs/engine"
)

// isTerminal reports whether w is a terminal (the status line redraws
// itself there; elsewhere progress goes to the log).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// statusLine prints progress until ctx ends: the seed's HeadlessDisplayer.
// On a terminal it redraws one line every second; otherwise it logs a line
// every 10 seconds.
func statusLine(ctx context.Context, t *engine.Torrent, w io.Writer, log *slog.Logger, quiet bool) {
	if quiet {
		return
	}
	term := isTerminal(w)
	every := 10 * time.Second
	if term {
		every = time.Second
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	var rates flowRates
	if st, err := t.Stats(ctx); err == nil {
		rates.add(time.Now(), st.Downloaded, st.Uploaded)
	}
	for {
		select {
		case <-ctx.Done():
			if term {
				fmt.Fprintln(w)
			}
			return
		case <-tick.C:
		}
		st, err := t.Stats(ctx)
		if err != nil {
			continue
		}
		// What flowed lately, not the engine's moving average, which
		// only decays towards 0 once nothing flows.
		st.DownloadRate, st.UploadRate = rates.add(time.Now(), st.Downloaded, st.Uploaded)
		if term {
			fmt.Fprintf(w, "\r\033[K%s", formatStatus(st))
		} else {
			log.Info("status", "done", percent(st), "down", rateString(st.DownloadRate), "up", rateString(st.UploadRate),
				"peers", st.Peers, "eta", eta(st))
		}
	}
}

// statusRateWindow is how far back the status line's rates look: they
// show 0 at most this long after the last byte.
const statusRateWindow = 3 * time.Second

// flowRates turns the byte counts of successive status ticks into the
// rates of the last statusRateWindow.
type flowRates struct {
	// samples are the ticks in the window, oldest first; at least the
	// previous tick is kept, however old (the log's ticks are 10 s apart).
	samples []flowSample
}

type flowSample struct {
	at       time.Time
	down, up int64
}

// add records the totals down and up at time at and returns the rates
// since the oldest sample kept (bytes/s); 0 until a second sample.
func (r *flowRates) add(at time.Time, down, up int64) (downRate, upRate float64) {
	r.samples = append(r.samples, flowSample{at, down, up})
	for len(r.samples) > 2 && at.Sub(r.samples[0].at) > statusRateWindow {
		r.samples = r.samples[1:]
	}
	first := r.samples[0]
	dt := at.Sub(first.at).Seconds()
	if dt <= 0 {
		return 0, 0
	}
	return max(0, float64(down-first.down)/dt), max(0, float64(up-first.up)/dt)
}

func formatStatus(st engine.Stats) string {
	if st.Metadata {
		return fmt.Sprintf("fetching metadata  %d/%d pieces  peers %d/%d", st.MetadataHave, st.MetadataPieces, st.Peers, st.KnownPeers)
	}
	return fmt.Sprintf("%s of %s (%s)  ↓ %s  ↑ %s  peers %d/%d  ETA %s",
		humanize.IBytes(uint64(st.VerifiedBytes)), humanize.IBytes(uint64(st.Total)), percent(st),
		rateString(st.DownloadRate), rateString(st.UploadRate), st.Peers, st.KnownPeers, eta(st))
}

func percent(st engine.Stats) string {
	if st.Total == 0 {
		return "100%"
	}
	return fmt.Sprintf("%.1f%%", 100*float64(st.VerifiedBytes)/float64(st.Total))
}

func rateString(r float64) string { return humanize.IBytes(uint64(r)) + "/s" }

func eta(st engine.Stats) string {
	left := st.Total - st.VerifiedBytes
	switch {
	case left <= 0:
		return "done"
	case st.DownloadRate < 1:
		return "∞"
	}
	return (time.Duration(float64(left)/st.DownloadRate) * time.Second).Round(time.Second).String()
}

func fmtBytes(n int64) string { return humanize.IBytes(uint64(n)) }

// startStatus runs the status line of t until stop (idempotent), which
// waits for it.
func startStatus(ctx context.Context, t *engine.Torrent, log *slog.Logger, stderr io.Writer, quiet bool) (stop func()) {
	statusCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		statusLine(statusCtx, t, stderr, log, quiet)
	}()
	return func() { cancel(); <-done }
}
