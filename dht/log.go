package dht

import (
	"log/slog"

	alog "github.com/anacrolix/log"

	"btfs/internal/slogalog"
)

// libLogger adapts the library's anacrolix/log logger to slog. Without a
// Logger of its own the library writes to stderr through alog.Default;
// a nil l gives a logger that drops everything.
func libLogger(l *slog.Logger) alog.Logger { return slogalog.New(l) }
