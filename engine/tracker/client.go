package tracker

import (
	"context"
	"errors"
	"fmt"
	"net/url"
)

// Options configure a Client: one set for each protocol.
type Options struct {
	// HTTP tunes the HTTP client.
	HTTP HTTPOptions
	// UDP tunes the UDP client.
	UDP UDPOptions
}

// Client announces to a tracker of any supported scheme (http, https, udp),
// choosing the protocol by the URL. Safe for concurrent use; one Client can
// serve every torrent of an engine.
type Client struct {
	// HTTP handles http:// and https:// URLs.
	HTTP *HTTPClient
	// UDP handles udp:// URLs.
	UDP *UDPClient
}

// NewClient returns a Client with fresh HTTP and UDP clients.
func NewClient(opts Options) *Client {
	return &Client{HTTP: NewHTTPClient(opts.HTTP), UDP: NewUDPClient(opts.UDP)}
}

// Announce sends req to the tracker at announceURL.
func (c *Client) Announce(ctx context.Context, announceURL string, req AnnounceRequest) (*AnnounceResponse, error) {
	u, err := url.Parse(announceURL)
	if err != nil {
		return nil, fmt.Errorf("tracker %s: bad URL: %w", announceURL, err)
	}
	switch u.Scheme {
	case "http", "https":
		return c.HTTP.Announce(ctx, announceURL, req)
	case "udp":
		return c.UDP.Announce(ctx, announceURL, req)
	}
	return nil, fmt.Errorf("tracker %s: unsupported scheme %q", announceURL, u.Scheme)
}

// Supported reports whether Announce can speak announceURL's scheme.
func Supported(announceURL string) bool {
	u, err := url.Parse(announceURL)
	if err != nil {
		return false
	}
	switch u.Scheme {
	case "http", "https", "udp":
		return u.Host != ""
	}
	return false
}

// Close releases both clients' connections and sockets.
func (c *Client) Close() error {
	return errors.Join(c.HTTP.Close(), c.UDP.Close())
}
