// Package netctx runs blocking connection I/O under a context: the one
// place where a context's deadline becomes a connection's and its
// cancellation interrupts the I/O, for the handshakes (MSE, BitTorrent)
// that must not outlive their deadline whatever the peer does.
package netctx

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// aLongTimeAgo is a deadline in the past: setting it makes pending I/O on a
// connection return at once.
var aLongTimeAgo = time.Unix(1, 0)

// Do runs fn with conn's deadline set from ctx: ctx's deadline becomes the
// connection's, and cancelling ctx interrupts fn by moving the deadline to
// the past. Afterwards the deadline is cleared, so the next layer starts
// from a clean connection. If ctx ended, the error says so
// (errors.Is(err, context.Canceled) or context.DeadlineExceeded).
func Do(ctx context.Context, conn net.Conn, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	dl, _ := ctx.Deadline() // zero: no deadline
	if err := conn.SetDeadline(dl); err != nil {
		return fmt.Errorf("setting the deadline: %w", err)
	}
	interrupted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		conn.SetDeadline(aLongTimeAgo)
		close(interrupted)
	})
	err := fn()
	if !stop() {
		<-interrupted // ctx ended: wait so the clearing below comes last
	}
	if err != nil {
		cerr := ctx.Err()
		if dl, ok := ctx.Deadline(); cerr == nil && ok && errors.Is(err, os.ErrDeadlineExceeded) && !time.Now().Before(dl) {
			cerr = context.DeadlineExceeded // the connection's timer fired just before the context's
		}
		if cerr != nil {
			err = fmt.Errorf("%w: %w", cerr, err)
		}
		return err
	}
	// Best effort: it fails only on a connection that is already closed,
	// and then the next use of it reports that.
	conn.SetDeadline(time.Time{})
	return nil
}

// Unblock makes conn's pending I/O return at once (a writer racing a
// failed reader, say); the connection is then done.
func Unblock(conn net.Conn) { conn.SetDeadline(aLongTimeAgo) }
