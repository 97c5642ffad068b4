package webseed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// TempError is a failure worth trying again later: a 5xx or 429 answer,
// a timeout, a connection cut. After is the server's Retry-After (0 when
// it gave none).
type TempError struct {
	Err   error
	After time.Duration
}

func (e *TempError) Error() string { return e.Err.Error() }
func (e *TempError) Unwrap() error { return e.Err }

// ErrNoRanges: the server ignores Range (it answered 200, the whole file,
// to a request for part of it). Such a server is no use to a streaming
// client: its answer is closed unread and the webseed dropped.
var ErrNoRanges = errors.New("webseed: the server ignores Range requests")

// fetchSpan gets sp's bytes and hands them to out in order, in pieces of
// any size; it reads no more of the body than sp.Len. An error is a
// *TempError when trying again may help. fileLen is the file's length: a
// 200 answer is good only when the whole file was asked for.
func fetchSpan(ctx context.Context, client *http.Client, sp Span, fileLen int64, buf []byte, out func([]byte) error) error {
	if sp.Padding {
		clear(buf)
		for left := sp.Len; left > 0; {
			n := min(left, int64(len(buf)))
			if err := out(buf[:n]); err != nil {
				return err
			}
			left -= n
		}
		return nil
	}
	// A server that stops sending mid-answer is cut after bodyIdle
	// without a byte: the request's context is cancelled by a timer that
	// every read pushes back.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	idle := time.AfterFunc(bodyIdle, cancel)
	defer idle.Stop()
	stalled := func(err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if rctx.Err() != nil {
			return &TempError{Err: fmt.Errorf("webseed: %s: nothing for %v: %w", sp.URL, bodyIdle, err)}
		}
		return nil
	}
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, sp.URL, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", sp.Off, sp.Off+sp.Len-1))
	resp, err := client.Do(req)
	if err != nil {
		if serr := stalled(err); serr != nil {
			return serr
		}
		if errors.Is(err, errTooManyRedirects) {
			return err
		}
		return &TempError{Err: fmt.Errorf("webseed: %w", err)}
	}
	defer resp.Body.Close() // unread bytes are not drained: the connection is dropped instead
	body := io.Reader(resp.Body)
	switch {
	case resp.StatusCode == http.StatusPartialContent:
		if start, ok := contentRangeStart(resp.Header.Get("Content-Range")); !ok || start != sp.Off {
			return fmt.Errorf("webseed: %s: Content-Range %q for bytes from %d", sp.URL, resp.Header.Get("Content-Range"), sp.Off)
		}
	case resp.StatusCode == http.StatusOK:
		if sp.Off != 0 || sp.Len != fileLen {
			return fmt.Errorf("%w (%s answered 200 to bytes %d-%d)", ErrNoRanges, sp.URL, sp.Off, sp.Off+sp.Len-1)
		}
	case resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout:
		return &TempError{Err: fmt.Errorf("webseed: %s: %s", sp.URL, resp.Status), After: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	default:
		return fmt.Errorf("webseed: %s: %s", sp.URL, resp.Status)
	}
	for left := sp.Len; left > 0; {
		n, err := body.Read(buf[:min(left, int64(len(buf)))])
		if n > 0 {
			idle.Stop() // the engine may take its time (a rate cap): not the server's fault
			if err := out(buf[:n]); err != nil {
				return err
			}
			left -= int64(n)
			idle.Reset(bodyIdle)
		}
		if err != nil && left > 0 {
			if serr := stalled(err); serr != nil {
				return serr
			}
			return &TempError{Err: fmt.Errorf("webseed: %s: %d bytes short: %w", sp.URL, left, err)}
		}
	}
	return nil
}

// contentRangeStart reads the first byte of "bytes a-b/c".
func contentRangeStart(v string) (int64, bool) {
	v, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, false
	}
	a, _, ok := strings.Cut(v, "-")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(a), 10, 64)
	return n, err == nil && n >= 0
}

// bodyIdle is how long a server may send nothing before the request is
// given up (a var for the tests). Waiting for the response's headers
// has its own bound (NewClient's ResponseHeaderTimeout).
var bodyIdle = 30 * time.Second

// maxRetryAfter bounds what a server may make us wait.
const maxRetryAfter = 10 * time.Minute

// retryAfter reads a Retry-After header: seconds or an HTTP date; 0 when
// absent or unreadable, at most maxRetryAfter.
func retryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		d = time.Duration(min(n, int64(maxRetryAfter/time.Second))) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}
