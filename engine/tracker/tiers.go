package tracker

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
)

// ErrNoTrackers is returned by Tiers.Try when the torrent names no tracker
// this package can speak to.
var ErrNoTrackers = errors.New("tracker: no usable tracker URL")

// Tiers orders a torrent's trackers as BEP 12 asks: the tiers of the
// announce-list in file order, each shuffled once; trackers are tried in
// that order, and one that answers moves to the front of its tier so that
// it is asked first next time. A torrent without an announce-list has one
// tier holding its announce URL.
//
// Tiers is not safe for concurrent use: it belongs to one Announcer.
type Tiers struct {
	// tiers holds the URLs, tier by tier, in the order they are tried.
	tiers [][]string
}

// NewTiers builds the tiers from a torrent's announce and announce-list
// (BEP 12: when the list is present, announce is ignored). URLs whose
// scheme this package cannot speak, blank ones and repeats are dropped, and
// so are tiers left empty. rnd shuffles each tier; nil means a random
// source of its own.
func NewTiers(announce string, announceList [][]string, rnd *rand.Rand) *Tiers {
	if rnd == nil {
		rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	src := announceList
	if len(src) == 0 {
		src = [][]string{{announce}}
	}
	seen := map[string]bool{}
	t := &Tiers{}
	for _, tier := range src {
		var urls []string
		for _, u := range tier {
			u = strings.TrimSpace(u)
			if u == "" || seen[u] || !Supported(u) {
				continue
			}
			seen[u] = true
			urls = append(urls, u)
		}
		if len(urls) == 0 {
			continue
		}
		rnd.Shuffle(len(urls), func(i, j int) { urls[i], urls[j] = urls[j], urls[i] })
		t.tiers = append(t.tiers, urls)
	}
	return t
}

// Len is the number of tracker URLs.
func (t *Tiers) Len() int {
	n := 0
	for _, tier := range t.tiers {
		n += len(tier)
	}
	return n
}

// List returns a copy of the tiers in their current order.
func (t *Tiers) List() [][]string {
	out := make([][]string, len(t.tiers))
	for i, tier := range t.tiers {
		out[i] = append([]string(nil), tier...)
	}
	return out
}

// Try calls do with each URL in order until one returns nil, and returns
// that URL after moving it to the front of its tier. When every URL fails,
// or ctx ends first, it returns the errors joined.
func (t *Tiers) Try(ctx context.Context, do func(ctx context.Context, url string) error) (string, error) {
	if t.Len() == 0 {
		return "", ErrNoTrackers
	}
	var errs []error
	for _, tier := range t.tiers {
		for i, u := range tier {
			if err := ctx.Err(); err != nil {
				return "", errors.Join(append(errs, err)...)
			}
			err := do(ctx, u)
			if err == nil {
				copy(tier[1:i+1], tier[:i])
				tier[0] = u
				return u, nil
			}
			errs = append(errs, err)
		}
	}
	return "", fmt.Errorf("tracker: all %d trackers failed: %w", len(errs), errors.Join(errs...))
}
