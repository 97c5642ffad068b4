package storagewrapper

import (
	"slices"
	"testing"
	"time"

	"btfs/picker"
)

func TestWants(t *testing.T) {
	f := newFixture(t, 5, 100)
	t0 := fixedTime
	tests := []struct {
		name string
		in   []picker.Want
		want []picker.Want
	}{
		{"empty range registers nothing", []picker.Want{{Start: 5, End: 5, Priority: picker.Now}}, nil},
		{"priority None registers nothing", []picker.Want{{Start: 0, End: 5}}, nil},
		{"clipped to the torrent", []picker.Want{{Start: -10, End: 1000, Priority: picker.Readahead}},
			[]picker.Want{{Start: 0, End: 100, Priority: picker.Readahead}}},
		{"past the end registers nothing", []picker.Want{{Start: 100, End: 200, Priority: picker.Now}}, nil},
		{"most urgent first", []picker.Want{
			{Start: 50, End: 60, Priority: picker.Readahead},
			{Start: 30, End: 40, Priority: picker.Now},
			{Start: 10, End: 20, Priority: picker.Now, Deadline: t0.Add(time.Second)},
			{Start: 20, End: 30, Priority: picker.Now, Deadline: t0},
			{Start: 0, End: 10, Priority: picker.Readahead},
		}, []picker.Want{
			{Start: 20, End: 30, Priority: picker.Now, Deadline: t0},
			{Start: 10, End: 20, Priority: picker.Now, Deadline: t0.Add(time.Second)},
			{Start: 30, End: 40, Priority: picker.Now},
			{Start: 0, End: 10, Priority: picker.Readahead},
			{Start: 50, End: 60, Priority: picker.Readahead},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWrapper(t, f, nil, Config{})
			var releases []func()
			for _, want := range tt.in {
				releases = append(releases, w.Want(want))
			}
			got := w.Wants()
			if !slices.Equal(got, tt.want) && !(len(got) == 0 && len(tt.want) == 0) {
				t.Fatalf("Wants = %+v\nwant %+v", got, tt.want)
			}
			if s := w.Stats(); s.Wants != len(tt.want) {
				t.Errorf("Stats.Wants = %d", s.Wants)
			}
			for _, r := range releases {
				r()
				r() // twice is harmless
			}
			if got := w.Wants(); len(got) != 0 {
				t.Fatalf("after release: %+v", got)
			}
		})
	}
}

func TestKick(t *testing.T) {
	f := newFixture(t, 5, 100)
	w := newWrapper(t, f, nil, Config{})
	kicked := func() bool {
		select {
		case <-w.Kick():
			return true
		default:
			return false
		}
	}
	if kicked() {
		t.Fatal("kick before any want")
	}
	r1 := w.Want(picker.Want{Start: 0, End: 5, Priority: picker.Now})
	r2 := w.Want(picker.Want{Start: 5, End: 10, Priority: picker.Now})
	if !kicked() || kicked() {
		t.Fatal("two changes must fold into exactly one pending kick")
	}
	r1()
	if !kicked() {
		t.Fatal("no kick on release")
	}
	r1()
	if kicked() {
		t.Fatal("kick on a second release of the same want")
	}
	w.Want(picker.Want{Start: 5, End: 5, Priority: picker.Now})
	if kicked() {
		t.Fatal("kick for an empty want")
	}
	r2()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	kicked()
	w.Want(picker.Want{Start: 0, End: 5, Priority: picker.Now})
	if len(w.Wants()) != 0 || kicked() {
		t.Fatal("want registered after Close")
	}
}
