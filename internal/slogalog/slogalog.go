// Package slogalog adapts the anacrolix/log loggers that anacrolix libraries
// take (the DHT, go-libutp) to log/slog, so their output goes where the
// rest of the log goes instead of to stderr.
package slogalog

import (
	"context"
	"log/slog"

	alog "github.com/anacrolix/log"
)

// New adapts a library's anacrolix/log logger to slog. Without a
// Logger of its own the library writes to stderr through alog.Default;
// a nil l gives a logger that drops everything.
func New(l *slog.Logger) alog.Logger {
	var out alog.Logger
	out.SetHandlers(slogHandler{l: l})
	// The filter avoids formatting messages that slog would drop; the
	// library adds Debug to every message without a level.
	// Critical is the highest level a filter can name; slogHandler drops
	// what gets through for a nil l.
	minLevel := alog.Critical
	switch {
	case l == nil:
	case l.Enabled(context.Background(), slog.LevelDebug):
		minLevel = alog.Debug
	case l.Enabled(context.Background(), slog.LevelInfo):
		minLevel = alog.Info
	default:
		minLevel = alog.Warning
	}
	return out.WithFilterLevel(minLevel)
}

// slogHandler is an alog.Handler writing to an slog.Logger.
type slogHandler struct {
	// l receives the records; nil drops them.
	l *slog.Logger
}

// Handle maps the library's levels to slog's. Its Error and Critical
// become Warn: nothing the DHT reports (a failed bootstrap, no starting
// nodes) stops a mount, and the tracker path may still find peers.
func (h slogHandler) Handle(r alog.Record) {
	if h.l == nil {
		return
	}
	level := slog.LevelDebug
	switch {
	case !r.Level.LessThan(alog.Warning):
		level = slog.LevelWarn
	case !r.Level.LessThan(alog.Info):
		level = slog.LevelInfo
	}
	ctx := context.Background()
	if !h.l.Enabled(ctx, level) {
		return
	}
	h.l.Log(ctx, level, r.Msg.String())
}
