package tracker

import (
	"context"
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func seeded(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0)) }

func TestNewTiers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		announce string
		list     [][]string
		want     [][]string // as sets per tier (order checked separately)
	}{
		{"announce only", "http://a/announce", nil, [][]string{{"http://a/announce"}}},
		{"list replaces announce", "http://a/announce", [][]string{{"udp://b:1"}, {"http://c/x", "https://d/x"}},
			[][]string{{"udp://b:1"}, {"http://c/x", "https://d/x"}}},
		{"blank, repeated and unsupported dropped", "", [][]string{{" ", "wss://e/x", "http://c/x"}, {"http://c/x"}, {}, {"udp://f:2", "dht://x"}},
			[][]string{{"http://c/x"}, {"udp://f:2"}}},
		{"nothing usable", "magnet:?xt=1", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTiers(tc.announce, tc.list, seeded(1))
			got := tr.List()
			for _, tier := range got {
				slices.Sort(tier)
			}
			if len(got) == 0 {
				got = nil
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("tiers %q, want %q", got, tc.want)
			}
			n := 0
			for _, tier := range tc.want {
				n += len(tier)
			}
			if tr.Len() != n {
				t.Fatalf("Len %d, want %d", tr.Len(), n)
			}
		})
	}
}

func TestNewTiersShufflesWithinTiers(t *testing.T) {
	list := [][]string{{"http://a/1", "http://b/1", "http://c/1", "http://d/1"}, {"http://e/2", "http://f/2"}}
	orders := map[string]bool{}
	for seed := range uint64(20) {
		got := NewTiers("", list, seeded(seed)).List()
		for i, tier := range got {
			if !strings.HasSuffix(tier[0], []string{"/1", "/2"}[i]) {
				t.Fatalf("seed %d: URL %s moved across tiers: %q", seed, tier[0], got)
			}
			sorted := slices.Clone(tier)
			slices.Sort(sorted)
			if !slices.Equal(sorted, list[i]) {
				t.Fatalf("seed %d: tier %d = %q, not a permutation of %q", seed, i, tier, list[i])
			}
		}
		orders[strings.Join(got[0], " ")] = true
	}
	if len(orders) < 2 {
		t.Fatalf("20 seeds gave only the orders %v: tiers are not shuffled", orders)
	}
	// The same seed gives the same order: the randomness is the caller's.
	if a, b := NewTiers("", list, seeded(7)).List(), NewTiers("", list, seeded(7)).List(); !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed, different orders: %q and %q", a, b)
	}
	// The caller's lists are not reordered.
	if list[0][0] != "http://a/1" || list[1][0] != "http://e/2" {
		t.Fatalf("NewTiers reordered its argument: %q", list)
	}
}

// tiersOf builds tiers in the given order (no shuffle: one URL per call
// to NewTiers would be awkward, so the order is set directly).
func tiersOf(tiers ...[]string) *Tiers {
	t := &Tiers{}
	for _, tier := range tiers {
		t.tiers = append(t.tiers, slices.Clone(tier))
	}
	return t
}

func TestTiersTry(t *testing.T) {
	dead := errors.New("dead")
	for _, tc := range []struct {
		name      string
		tiers     [][]string
		alive     []string // URLs that answer
		wantURL   string
		wantTried []string
		wantAfter [][]string
		wantErr   bool
	}{
		{
			name:  "first answers, nothing moves",
			tiers: [][]string{{"a", "b", "c"}}, alive: []string{"a", "b"},
			wantURL: "a", wantTried: []string{"a"}, wantAfter: [][]string{{"a", "b", "c"}},
		},
		{
			name:  "the one that answers moves to the front",
			tiers: [][]string{{"a", "b", "c"}}, alive: []string{"c"},
			wantURL: "c", wantTried: []string{"a", "b", "c"}, wantAfter: [][]string{{"c", "a", "b"}},
		},
		{
			name:  "a dead tier falls through to the next",
			tiers: [][]string{{"a", "b"}, {"c", "d"}}, alive: []string{"d"},
			wantURL: "d", wantTried: []string{"a", "b", "c", "d"}, wantAfter: [][]string{{"a", "b"}, {"d", "c"}},
		},
		{
			name:  "all dead",
			tiers: [][]string{{"a"}, {"b"}}, alive: nil,
			wantTried: []string{"a", "b"}, wantAfter: [][]string{{"a"}, {"b"}}, wantErr: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := tiersOf(tc.tiers...)
			var tried []string
			url, err := tr.Try(context.Background(), func(_ context.Context, u string) error {
				tried = append(tried, u)
				if slices.Contains(tc.alive, u) {
					return nil
				}
				return dead
			})
			if (err != nil) != tc.wantErr || url != tc.wantURL {
				t.Fatalf("Try = %q, %v; want %q, error %v", url, err, tc.wantURL, tc.wantErr)
			}
			if err != nil && !errors.Is(err, dead) {
				t.Fatalf("err = %v does not wrap the trackers' errors", err)
			}
			if !slices.Equal(tried, tc.wantTried) {
				t.Fatalf("tried %q, want %q", tried, tc.wantTried)
			}
			if got := tr.List(); !reflect.DeepEqual(got, tc.wantAfter) {
				t.Fatalf("tiers after %q, want %q", got, tc.wantAfter)
			}
		})
	}
}

func TestTiersTryStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	tr := tiersOf([]string{"a", "b", "c"})
	var tried []string
	_, err := tr.Try(ctx, func(_ context.Context, u string) error {
		tried = append(tried, u)
		cancel()
		return errors.New("dead")
	})
	if !errors.Is(err, context.Canceled) || len(tried) != 1 {
		t.Fatalf("after cancel: err %v, tried %q; want Canceled after one", err, tried)
	}
	if _, err := NewTiers("", nil, nil).Try(context.Background(), nil); !errors.Is(err, ErrNoTrackers) {
		t.Fatalf("no trackers: err = %v", err)
	}
}
