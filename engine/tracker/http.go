package tracker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// HTTPOptions tune an HTTPClient; the zero value gives the defaults.
type HTTPOptions struct {
	// MaxBodySize caps a reply body; a longer reply is an error rather than
	// memory spent on it. Default 1 MiB, which holds ~170 000 compact peers.
	MaxBodySize int64
	// MaxRedirects is how many redirects one announce may follow: 0 means
	// the default (3), a negative value refuses every redirect.
	MaxRedirects int
	// Timeout bounds one announce whose context has no earlier deadline.
	// Default 30 s.
	Timeout time.Duration
	// UserAgent is sent with each request. Default "btfs".
	UserAgent string
}

// HTTPClient announces to HTTP and HTTPS trackers (BEP 3, 23, 7). It owns
// its transport, so its idle connections are closed by Close and never mix
// with any other client's. Safe for concurrent use.
type HTTPClient struct {
	// client is the dedicated http.Client with the redirect limit.
	client *http.Client
	// transport is client's transport, kept to close idle connections.
	transport *http.Transport
	// maxBody is HTTPOptions.MaxBodySize with its default applied.
	maxBody int64
	// timeout is HTTPOptions.Timeout with its default applied.
	timeout time.Duration
	// userAgent is the User-Agent header value.
	userAgent string
}

// NewHTTPClient returns a client with its own transport.
func NewHTTPClient(opts HTTPOptions) *HTTPClient {
	if opts.MaxBodySize <= 0 {
		opts.MaxBodySize = 1 << 20
	}
	switch {
	case opts.MaxRedirects == 0:
		opts.MaxRedirects = 3
	case opts.MaxRedirects < 0:
		opts.MaxRedirects = 0
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "btfs"
	}
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   15 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		TLSHandshakeTimeout:    10 * time.Second,
		ResponseHeaderTimeout:  opts.Timeout,
		MaxIdleConns:           16,
		MaxIdleConnsPerHost:    2,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	maxRedirects := opts.MaxRedirects
	c := &http.Client{
		Transport: tr,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > maxRedirects {
				return fmt.Errorf("tracker: more than %d redirects", maxRedirects)
			}
			return nil
		},
	}
	return &HTTPClient{client: c, transport: tr, maxBody: opts.MaxBodySize, timeout: opts.Timeout, userAgent: opts.UserAgent}
}

// Close closes the client's idle connections. Announces still running
// finish; the client stays usable.
func (c *HTTPClient) Close() error {
	c.transport.CloseIdleConnections()
	return nil
}

// Announce sends req to the tracker at announceURL and returns its reply.
// A "failure reason" is returned as a *FailureError.
func (c *HTTPClient) Announce(ctx context.Context, announceURL string, req AnnounceRequest) (*AnnounceResponse, error) {
	if err := req.validate(); err != nil {
		return nil, err
	}
	u, err := buildAnnounceURL(announceURL, &req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("tracker %s: %w", announceURL, err)
	}
	hreq.Header.Set("User-Agent", c.userAgent)
	resp, err := c.client.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("tracker %s: announce: %w", announceURL, err)
	}
	defer resp.Body.Close()
	body, err := c.readBody(resp)
	if err != nil {
		return nil, fmt.Errorf("tracker %s: %w", announceURL, err)
	}
	r, err := parseHTTPResponse(announceURL, body)
	if resp.StatusCode != http.StatusOK {
		// Some trackers give their failure reason with an error status: it
		// says more than the status does.
		var fe *FailureError
		if errors.As(err, &fe) {
			return nil, err
		}
		return nil, fmt.Errorf("tracker %s: HTTP status %s", announceURL, resp.Status)
	}
	return r, err
}

// readBody reads at most c.maxBody bytes of a reply, failing on more.
func (c *HTTPClient) readBody(resp *http.Response) ([]byte, error) {
	if resp.ContentLength > c.maxBody {
		return nil, fmt.Errorf("reply of %d bytes is larger than the limit of %d", resp.ContentLength, c.maxBody)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("reading reply: %w", err)
	}
	if int64(len(body)) > c.maxBody {
		return nil, fmt.Errorf("reply is larger than the limit of %d bytes", c.maxBody)
	}
	return body, nil
}

// buildAnnounceURL appends the announce parameters to the tracker's URL,
// keeping any query it already has (private trackers put a passkey there).
func buildAnnounceURL(announceURL string, req *AnnounceRequest) (string, error) {
	u, err := url.Parse(announceURL)
	if err != nil {
		return "", fmt.Errorf("tracker %s: bad URL: %w", announceURL, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("tracker %s: scheme %q is not http or https", announceURL, u.Scheme)
	}
	if u.Host == "" {
		return "", fmt.Errorf("tracker %s: URL has no host", announceURL)
	}
	var q strings.Builder
	q.WriteString(u.RawQuery)
	add := func(k, v string) {
		if q.Len() > 0 {
			q.WriteByte('&')
		}
		q.WriteString(k)
		q.WriteByte('=')
		q.WriteString(v)
	}
	add("info_hash", escapeBytes(req.InfoHash[:]))
	add("peer_id", escapeBytes(req.PeerID[:]))
	add("port", strconv.Itoa(req.Port))
	add("uploaded", strconv.FormatInt(req.Uploaded, 10))
	add("downloaded", strconv.FormatInt(req.Downloaded, 10))
	add("left", strconv.FormatInt(req.Left, 10))
	add("compact", "1")
	if req.Event != EventNone {
		add("event", req.Event.String())
	}
	if req.NumWant > 0 {
		add("numwant", strconv.Itoa(req.NumWant))
	}
	add("key", fmt.Sprintf("%08x", req.Key))
	if req.TrackerID != "" {
		add("trackerid", escapeBytes([]byte(req.TrackerID)))
	}
	u.RawQuery = q.String()
	u.Fragment = ""
	return u.String(), nil
}

// escapeBytes percent-encodes raw bytes for a query: the RFC 3986
// unreserved characters stay, everything else becomes %XX (never '+', which
// some trackers would read as a space).
func escapeBytes(b []byte) string {
	const hex = "0123456789ABCDEF"
	var s strings.Builder
	s.Grow(3 * len(b))
	for _, c := range b {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' {
			s.WriteByte(c)
			continue
		}
		s.WriteByte('%')
		s.WriteByte(hex[c>>4])
		s.WriteByte(hex[c&15])
	}
	return s.String()
}
