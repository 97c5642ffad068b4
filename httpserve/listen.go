package httpserve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Serve serves s on ln until ctx ends, then closes every connection: a
// streaming response's request context ends, its Reader is closed and its
// wants are released (a graceful Shutdown would wait for a film to end).
// It returns once every handler has returned: no Reader outlives it.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	// handlers counts the handlers running; once stopped is set, no new
	// one starts (a WaitGroup must not grow while Wait waits).
	var (
		mu       sync.Mutex
		stopped  bool
		handlers sync.WaitGroup
	)
	defer func() {
		mu.Lock()
		stopped = true
		mu.Unlock()
		handlers.Wait()
	}()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			if stopped {
				mu.Unlock()
				http.Error(w, "stopping", http.StatusServiceUnavailable)
				return
			}
			handlers.Add(1)
			mu.Unlock()
			defer handlers.Done()
			h.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    16 << 10,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			srv.Close()
		case <-done:
		}
	}()
	err := srv.Serve(ln)
	close(done)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("http: %w", err)
}
