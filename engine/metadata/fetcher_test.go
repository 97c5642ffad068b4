package metadata

import (
	"bytes"
	"crypto/sha1"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"btfs/engine/wire"
	"btfs/internal/leakcheck"
	"btfs/metainfo"
)

func TestMain(m *testing.M) { leakcheck.Main(m) }

// makeInfo returns a valid single-file info dictionary with n 16 KiB data
// pieces: 20 bytes of "pieces" each, so its size grows with n.
func makeInfo(t testing.TB, n int, seed uint64) []byte {
	t.Helper()
	hashes := make([]byte, 20*n)
	r := rand.New(rand.NewPCG(seed, 1))
	for i := range hashes {
		hashes[i] = byte(r.Uint32())
	}
	info := fmt.Appendf(nil, "d6:lengthi%de4:name5:a.bin12:piece lengthi16384e6:pieces%d:", int64(n)*16384, len(hashes))
	info = append(info, hashes...)
	info = append(info, 'e')
	if _, err := metainfo.ParseInfo(info); err != nil {
		t.Fatalf("test dictionary does not parse: %v", err)
	}
	return info
}

// infoOfSize returns a valid info dictionary of exactly size bytes, by
// padding its name. Sizes from about 100 bytes up work.
func infoOfSize(t testing.TB, size int) []byte {
	t.Helper()
	// The dictionary grows by one byte per name byte, plus one at each
	// extra digit of the name's length: start just below the guess.
	base := len(fmt.Appendf(nil, "d6:lengthi1e4:name0:12:piece lengthi16384e6:pieces20:%se", bytes.Repeat([]byte{7}, 20)))
	for nameLen := max(1, size-base-8); ; nameLen++ {
		name := bytes.Repeat([]byte{'n'}, nameLen)
		info := fmt.Appendf(nil, "d6:lengthi1e4:name%d:%s12:piece lengthi16384e6:pieces20:%se", nameLen, name, bytes.Repeat([]byte{7}, 20))
		if len(info) == size {
			if _, err := metainfo.ParseInfo(info); err != nil {
				t.Fatalf("test dictionary does not parse: %v", err)
			}
			return info
		}
		if len(info) > size {
			t.Fatalf("cannot make a dictionary of %d bytes", size)
		}
	}
}

// behaviour is how a simulated peer answers ut_metadata requests.
type behaviour int

const (
	honest  behaviour = iota // sends the pieces of what it serves
	corrupt                  // sends them with the first byte flipped
	silent                   // never answers
	rejects                  // rejects every request
)

// simPeer is one simulated remote peer: it announces a size and answers
// requests from a dictionary. These stand in for remote peers on the
// network, not for any component of ours.
type simPeer struct {
	id     string
	size   int64     // announced metadata_size; 0 means len(serves)
	serves []byte    // the dictionary it answers from; nil means the real one
	how    behaviour // how it answers
	joinAt int       // simulation round at which it announces
}

// outcome is what a simulation observed.
type outcome struct {
	done        bool
	rounds      int
	banned      []string
	hashErrs    int
	sizeErrs    map[string]error
	contributed map[string]int // accepted pieces per peer, over all attempts
	otherErrs   []error
}

// simulate drives f as the engine's loop would, one round a simulated
// second: peers that join announce, every peer is asked for as many
// pieces as NextRequest gives, and every request is answered (or not)
// within the round.
func simulate(t *testing.T, f *Fetcher, real []byte, peers []simPeer, maxRounds int) outcome {
	t.Helper()
	out := outcome{sizeErrs: map[string]error{}, contributed: map[string]int{}}
	now := time.Unix(1_700_000_000, 0)
	type req struct {
		p     *simPeer
		piece int
	}
	for round := 0; round < maxRounds; round++ {
		out.rounds = round
		for i := range peers {
			p := &peers[i]
			if p.serves == nil {
				p.serves = real
			}
			if p.joinAt == round {
				size := p.size
				if size == 0 {
					size = int64(len(p.serves))
				}
				if err := f.SetSize(p.id, size); err != nil {
					out.sizeErrs[p.id] = err
				}
			}
		}
		var pending []req
		for i := range peers {
			p := &peers[i]
			if p.joinAt > round || f.Banned(p.id) {
				continue
			}
			for {
				piece, ok := f.NextRequest(p.id, now)
				if !ok {
					break
				}
				pending = append(pending, req{p, piece})
			}
		}
		for _, r := range pending {
			switch r.p.how {
			case silent:
				continue
			case rejects:
				if err := f.Rejected(r.p.id, r.piece, now); err != nil {
					out.otherErrs = append(out.otherErrs, err)
				}
				continue
			}
			n := wire.MetadataPieceLen(int64(len(r.p.serves)), r.piece)
			data := slices.Clone(r.p.serves[r.piece*wire.MetadataPieceSize : r.piece*wire.MetadataPieceSize+n])
			if r.p.how == corrupt {
				data[0] ^= 0xff
			}
			done, err := f.Received(r.p.id, r.piece, data)
			var herr *HashError
			switch {
			case errors.As(err, &herr):
				out.hashErrs++
				out.contributed[r.p.id]++
			case err != nil:
				out.otherErrs = append(out.otherErrs, err)
			default:
				out.contributed[r.p.id]++
			}
			out.banned = append(out.banned, f.TakeBanned()...)
			if done {
				out.done = true
				return out
			}
		}
		out.banned = append(out.banned, f.TakeBanned()...)
		now = now.Add(time.Second)
	}
	return out
}

func TestFetch(t *testing.T) {
	tiny := infoOfSize(t, 200)
	exact := infoOfSize(t, 2*wire.MetadataPieceSize)
	six := makeInfo(t, 4500, 1) // 90,000+ bytes of hashes: 6 metadata pieces
	if n := wire.MetadataPieces(int64(len(six))); n != 6 {
		t.Fatalf("six has %d pieces", n)
	}
	fake := makeInfo(t, 4500, 2) // same shape, other hashes: a liar's dictionary
	other := makeInfo(t, 3000, 3)

	tests := []struct {
		name  string
		real  []byte
		peers []simPeer
		// expectations
		wantBanned      []string
		wantHashErrs    int
		wantContributed []string // peers that must have contributed
		wantNever       []string // peers that must never have contributed
		wantSizeErr     map[string]error
	}{
		{name: "tiny from one peer", real: tiny,
			peers:           []simPeer{{id: "a"}},
			wantContributed: []string{"a"}},
		{name: "two full pieces", real: exact,
			peers:           []simPeer{{id: "a"}},
			wantContributed: []string{"a"}},
		{name: "honest fetch spread over 3 peers", real: six,
			peers:           []simPeer{{id: "a"}, {id: "b"}, {id: "c"}},
			wantContributed: []string{"a", "b", "c"}},
		{name: "corrupt peer among honest: smart ban blames only it", real: six,
			peers:           []simPeer{{id: "a"}, {id: "liar", how: corrupt}, {id: "c"}},
			wantBanned:      []string{"liar"},
			wantHashErrs:    1,
			wantContributed: []string{"a", "c"}},
		{name: "sole contributor of bad data is banned at once", real: tiny,
			peers:        []simPeer{{id: "liar", how: corrupt}, {id: "b", joinAt: 1}},
			wantBanned:   []string{"liar"},
			wantHashErrs: 1, wantContributed: []string{"b"}},
		{name: "other dictionary of the same size", real: six,
			peers:        []simPeer{{id: "liar", serves: fake}, {id: "b", joinAt: 5}},
			wantBanned:   []string{"liar"},
			wantHashErrs: 1, wantContributed: []string{"b"}},
		{name: "metadata_size of 10^9 refused", real: six,
			peers:           []simPeer{{id: "huge", size: 1_000_000_000, how: corrupt}, {id: "b"}},
			wantContributed: []string{"b"}, wantNever: []string{"huge"},
			wantSizeErr: map[string]error{"huge": ErrTooLarge}},
		{name: "metadata_size 0 refused", real: tiny,
			peers:           []simPeer{{id: "zero", size: -1}, {id: "b"}},
			wantContributed: []string{"b"}, wantNever: []string{"zero"},
			wantSizeErr: map[string]error{"zero": ErrBadSize}},
		{name: "liar's size first, alone: its data fails, then the true size", real: six,
			peers:        []simPeer{{id: "liar", serves: other}, {id: "b", joinAt: 1}},
			wantBanned:   []string{"liar"},
			wantHashErrs: 1, wantContributed: []string{"b"},
			wantSizeErr: map[string]error{"b": ErrSizeMismatch}},
		{name: "two honest outvote a liar's size before any data", real: six,
			peers:           []simPeer{{id: "liar", serves: other, how: corrupt}, {id: "b"}, {id: "c"}},
			wantContributed: []string{"b", "c"}, wantNever: []string{"liar"},
			// b ties with the liar, who announced first; c breaks the tie.
			wantSizeErr: map[string]error{"b": ErrSizeMismatch}},
		{name: "silent liar's size gives way when it stalls", real: six,
			peers:           []simPeer{{id: "liar", serves: other, how: silent}, {id: "b", joinAt: 1}},
			wantContributed: []string{"b"},
			wantSizeErr:     map[string]error{"b": ErrSizeMismatch}},
		{name: "rejecting peer backs off, honest one serves", real: six,
			peers:           []simPeer{{id: "r", how: rejects}, {id: "b", joinAt: 2}},
			wantContributed: []string{"b"}, wantNever: []string{"r"}},
		{name: "silent peer's pieces time out to another", real: six,
			peers:           []simPeer{{id: "s", how: silent}, {id: "b"}},
			wantContributed: []string{"b"}, wantNever: []string{"s"}},
		{name: "two corrupt among honest", real: six,
			peers: []simPeer{{id: "l1", how: corrupt}, {id: "a"}, {id: "l2", how: corrupt}, {id: "b"}},
			// The first attempt mixes everyone; single-source attempts
			// follow until an honest one succeeds: the liars are banned
			// either as owners of a failed attempt or by smart ban.
			wantBanned:      []string{"l1", "l2"},
			wantContributed: []string{"a"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := NewFetcher(metainfo.Hash(sha1.Sum(tc.real)), 0)
			out := simulate(t, f, tc.real, tc.peers, 200)
			if !out.done {
				t.Fatalf("not done after %d rounds: %+v", out.rounds, out)
			}
			if !bytes.Equal(f.Result(), tc.real) {
				t.Fatal("Result is not the dictionary")
			}
			if _, err := metainfo.ParseInfo(f.Result()); err != nil {
				t.Fatalf("ParseInfo(Result): %v", err)
			}
			if f.Size() != int64(len(tc.real)) || !f.Done() {
				t.Fatalf("Size %d, Done %v", f.Size(), f.Done())
			}
			if have, total := f.Progress(); have != total || total != wire.MetadataPieces(int64(len(tc.real))) {
				t.Fatalf("Progress %d/%d", have, total)
			}
			banned := slices.Sorted(slices.Values(out.banned))
			if !slices.Equal(banned, tc.wantBanned) {
				t.Fatalf("banned %v, want %v", banned, tc.wantBanned)
			}
			if tc.wantHashErrs != 0 && out.hashErrs != tc.wantHashErrs {
				t.Fatalf("%d hash errors, want %d", out.hashErrs, tc.wantHashErrs)
			}
			for _, id := range tc.wantContributed {
				if out.contributed[id] == 0 {
					t.Errorf("%s contributed nothing: %v", id, out.contributed)
				}
			}
			for _, id := range tc.wantNever {
				if out.contributed[id] != 0 {
					t.Errorf("%s contributed %d pieces", id, out.contributed[id])
				}
			}
			for id, err := range out.sizeErrs {
				if want := tc.wantSizeErr[id]; want == nil || !errors.Is(err, want) {
					t.Errorf("SetSize(%s): %v, want %v", id, err, want)
				}
			}
			for id, want := range tc.wantSizeErr {
				if out.sizeErrs[id] == nil {
					t.Errorf("SetSize(%s) succeeded, want %v", id, want)
				}
			}
			for _, err := range out.otherErrs {
				if !errors.Is(err, ErrUnrequested) {
					t.Errorf("unexpected error: %v", err)
				}
			}
		})
	}
}

// TestSmartBanSpares is the case where banning every contributor would
// leave no honest peer: one honest seeder and one liar share the first
// attempt, and the seeder must survive it.
func TestSmartBanSpares(t *testing.T) {
	real := makeInfo(t, 4500, 1)
	f := NewFetcher(metainfo.Hash(sha1.Sum(real)), 0)
	out := simulate(t, f, real, []simPeer{{id: "seed"}, {id: "liar", how: corrupt}}, 200)
	if !out.done {
		t.Fatalf("not done: %+v", out)
	}
	if out.contributed["liar"] == 0 || out.hashErrs != 1 {
		t.Fatalf("the liar did not take part in a failed attempt: %+v", out)
	}
	if !slices.Equal(out.banned, []string{"liar"}) || f.Banned("seed") {
		t.Fatalf("banned %v", out.banned)
	}
}

func TestHashErrorReport(t *testing.T) {
	real := infoOfSize(t, 300)
	f := NewFetcher(metainfo.Hash(sha1.Sum(real)), 0)
	now := time.Unix(0, 0)
	if err := f.SetSize("liar", 300); err != nil {
		t.Fatal(err)
	}
	piece, ok := f.NextRequest("liar", now)
	if !ok || piece != 0 {
		t.Fatalf("NextRequest = %d, %v", piece, ok)
	}
	done, err := f.Received("liar", 0, make([]byte, 300))
	var herr *HashError
	if done || !errors.As(err, &herr) || !errors.Is(err, ErrHashMismatch) {
		t.Fatalf("Received = %v, %v", done, err)
	}
	if herr.Size != 300 || !slices.Equal(herr.Contributors, []string{"liar"}) || !slices.Equal(herr.Banned, []string{"liar"}) || herr.InfoHash != metainfo.Hash(sha1.Sum(real)) {
		t.Fatalf("HashError %+v", herr)
	}
	if got := f.TakeBanned(); !slices.Equal(got, []string{"liar"}) {
		t.Fatalf("TakeBanned %v", got)
	}
	if got := f.TakeBanned(); got != nil {
		t.Fatalf("second TakeBanned %v", got)
	}
	if err := f.SetSize("liar", 300); !errors.Is(err, ErrBanned) {
		t.Fatalf("SetSize of a banned peer: %v", err)
	}
	if _, ok := f.NextRequest("liar", now); ok {
		t.Fatal("banned peer asked")
	}
}

// TestCalls checks single calls and their errors, step by step.
func TestCalls(t *testing.T) {
	real := makeInfo(t, 1000, 4) // 20,000+ bytes: 2 pieces
	hash := metainfo.Hash(sha1.Sum(real))
	size := int64(len(real))
	t0 := time.Unix(1000, 0)
	piece := func(i int) []byte {
		n := wire.MetadataPieceLen(size, i)
		return real[i*wire.MetadataPieceSize : i*wire.MetadataPieceSize+n]
	}
	tests := []struct {
		name string
		run  func(t *testing.T, f *Fetcher)
	}{
		{"nothing asked before a size", func(t *testing.T, f *Fetcher) {
			if _, ok := f.NextRequest("a", t0); ok {
				t.Fatal("asked a peer without a size")
			}
			if _, err := f.Received("a", 0, piece(0)); !errors.Is(err, ErrUnrequested) {
				t.Fatalf("Received: %v", err)
			}
		}},
		{"pipeline of 2, then pieces to the next peer", func(t *testing.T, f *Fetcher) {
			mustSize(t, f, "a", size)
			mustSize(t, f, "b", size)
			got := drain(f, "a", t0)
			if !slices.Equal(got, []int{0, 1}) {
				t.Fatalf("a asked for %v", got)
			}
			if got := drain(f, "b", t0); len(got) != 0 {
				t.Fatalf("b asked for %v while a holds both", got)
			}
		}},
		{"timeout re-requests from another peer; the late answer still counts", func(t *testing.T, f *Fetcher) {
			mustSize(t, f, "a", size)
			mustSize(t, f, "b", size)
			drain(f, "a", t0)
			if got := drain(f, "b", t0.Add(RequestTimeout-time.Second)); len(got) != 0 {
				t.Fatalf("b asked for %v before the timeout", got)
			}
			if got := drain(f, "b", t0.Add(RequestTimeout)); !slices.Equal(got, []int{0, 1}) {
				t.Fatalf("b asked for %v after the timeout", got)
			}
			if done, err := f.Received("a", 0, piece(0)); done || err != nil {
				t.Fatalf("late answer from a: %v, %v", done, err)
			}
			if done, err := f.Received("b", 0, piece(0)); done || err != nil {
				t.Fatalf("duplicate from b: %v, %v", done, err)
			}
			if done, err := f.Received("b", 1, piece(1)); !done || err != nil {
				t.Fatalf("last piece: %v, %v", done, err)
			}
			if done, err := f.Received("a", 1, piece(1)); done || err != nil {
				t.Fatalf("after done: %v, %v", done, err)
			}
		}},
		{"a timed-out peer is asked again when alone", func(t *testing.T, f *Fetcher) {
			mustSize(t, f, "a", size)
			drain(f, "a", t0)
			if got := drain(f, "a", t0.Add(RequestTimeout)); !slices.Equal(got, []int{0, 1}) {
				t.Fatalf("a asked again for %v", got)
			}
		}},
		{"reject backs off", func(t *testing.T, f *Fetcher) {
			mustSize(t, f, "a", size)
			drain(f, "a", t0)
			if err := f.Rejected("a", 0, t0); err != nil {
				t.Fatal(err)
			}
			if err := f.Rejected("a", 0, t0); !errors.Is(err, ErrUnrequested) {
				t.Fatalf("second reject: %v", err)
			}
			if got := drain(f, "a", t0.Add(RejectBackoff-time.Second)); len(got) != 0 {
				t.Fatalf("asked %v during the back-off", got)
			}
			// Piece 1's request has timed out by then too.
			if got := drain(f, "a", t0.Add(RejectBackoff)); !slices.Equal(got, []int{0, 1}) {
				t.Fatalf("asked %v after the back-off", got)
			}
		}},
		{"unrequested piece is dropped, nobody banned", func(t *testing.T, f *Fetcher) {
			mustSize(t, f, "a", size)
			mustSize(t, f, "b", size)
			drain(f, "a", t0)
			if _, err := f.Received("b", 0, piece(0)); !errors.Is(err, ErrUnrequested) {
				t.Fatalf("Received: %v", err)
			}
			if _, err := f.Received("a", 7, piece(0)); !errors.Is(err, ErrUnrequested) {
				t.Fatalf("piece out of range: %v", err)
			}
			if _, err := f.Received("a", -1, piece(0)); !errors.Is(err, ErrUnrequested) {
				t.Fatalf("negative piece: %v", err)
			}
			if b := f.TakeBanned(); b != nil {
				t.Fatalf("banned %v", b)
			}
		}},
		{"wrong length bans", func(t *testing.T, f *Fetcher) {
			mustSize(t, f, "a", size)
			drain(f, "a", t0)
			if _, err := f.Received("a", 1, piece(0)); !errors.Is(err, ErrBadLength) {
				t.Fatalf("Received: %v", err)
			}
			if b := f.TakeBanned(); !slices.Equal(b, []string{"a"}) {
				t.Fatalf("banned %v", b)
			}
			if _, err := f.Received("a", 0, piece(0)); !errors.Is(err, ErrBanned) {
				t.Fatalf("Received from a banned peer: %v", err)
			}
		}},
		{"a banned peer's pieces are dropped from the attempt", func(t *testing.T, f *Fetcher) {
			mustSize(t, f, "a", size)
			drain(f, "a", t0)
			if _, err := f.Received("a", 0, piece(0)); err != nil {
				t.Fatal(err)
			}
			if have, _ := f.Progress(); have != 1 {
				t.Fatalf("have %d", have)
			}
			if _, err := f.Received("a", 1, piece(0)); !errors.Is(err, ErrBadLength) {
				t.Fatalf("Received: %v", err)
			}
			if have, total := f.Progress(); have != 0 || total != 2 {
				t.Fatalf("Progress %d/%d after the ban", have, total)
			}
		}},
		{"changed size refuses the peer", func(t *testing.T, f *Fetcher) {
			mustSize(t, f, "a", size)
			if err := f.SetSize("a", size); err != nil {
				t.Fatalf("same size again: %v", err)
			}
			if err := f.SetSize("a", size+1); !errors.Is(err, ErrSizeMismatch) {
				t.Fatalf("changed size: %v", err)
			}
			if _, ok := f.NextRequest("a", t0); ok {
				t.Fatal("refused peer asked")
			}
			if err := f.SetSize("a", size); !errors.Is(err, ErrSizeMismatch) {
				t.Fatalf("refused peer back to the first size: %v", err)
			}
		}},
		{"cap is inclusive", func(t *testing.T, f *Fetcher) {
			g := NewFetcher(hash, size)
			if err := g.SetSize("a", size); err != nil {
				t.Fatalf("size at the cap: %v", err)
			}
			if err := g.SetSize("b", size+1); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("size over the cap: %v", err)
			}
		}},
		{"PeerGone frees its pieces at once", func(t *testing.T, f *Fetcher) {
			mustSize(t, f, "a", size)
			mustSize(t, f, "b", size)
			drain(f, "a", t0)
			f.PeerGone("a")
			if got := drain(f, "b", t0); !slices.Equal(got, []int{0, 1}) {
				t.Fatalf("b asked for %v", got)
			}
			if _, err := f.Received("a", 0, piece(0)); !errors.Is(err, ErrUnrequested) {
				t.Fatalf("answer from a gone peer: %v", err)
			}
		}},
		{"single mode: one owner, taken over when it stalls, smart ban at the end", func(t *testing.T, f *Fetcher) {
			mustSize(t, f, "a", size)
			mustSize(t, f, "b", size)
			drain(f, "a", t0)
			t1 := t0.Add(RequestTimeout)
			drain(f, "b", t1)
			bad := slices.Clone(piece(0))
			bad[0] ^= 1
			if _, err := f.Received("a", 0, bad); err != nil {
				t.Fatal(err)
			}
			_, err := f.Received("b", 1, piece(1))
			var herr *HashError
			if !errors.As(err, &herr) || !slices.Equal(herr.Contributors, []string{"a", "b"}) || herr.Banned != nil {
				t.Fatalf("mixed failure: %v", err)
			}
			if b := f.TakeBanned(); b != nil {
				t.Fatalf("banned %v on a mixed failure", b)
			}
			if got := drain(f, "a", t1); !slices.Equal(got, []int{0, 1}) {
				t.Fatalf("owner a asked for %v", got)
			}
			if got := drain(f, "b", t1); len(got) != 0 {
				t.Fatalf("b asked for %v while a owns the attempt", got)
			}
			t2 := t1.Add(RequestTimeout)
			if got := drain(f, "b", t2); !slices.Equal(got, []int{0, 1}) {
				t.Fatalf("b took over with %v", got)
			}
			if _, err := f.Received("a", 0, piece(0)); !errors.Is(err, ErrUnrequested) {
				t.Fatalf("old owner's late answer: %v", err)
			}
			f.Received("b", 0, piece(0))
			if done, err := f.Received("b", 1, piece(1)); !done || err != nil {
				t.Fatalf("%v, %v", done, err)
			}
			if b := f.TakeBanned(); !slices.Equal(b, []string{"a"}) {
				t.Fatalf("smart ban: %v", b)
			}
		}},
		{"back to a slow honest peer's size after a liar's fails", func(t *testing.T, f *Fetcher) {
			mustSize(t, f, "slow", size)
			drain(f, "slow", t0)
			if err := f.SetSize("liar", 300); !errors.Is(err, ErrSizeMismatch) {
				t.Fatalf("liar's size while slow is live: %v", err)
			}
			t1 := t0.Add(RequestTimeout)
			if got := drain(f, "liar", t1); !slices.Equal(got, []int{0}) || f.Size() != 300 {
				t.Fatalf("the stalled peer's size did not give way: asked %v, size %d", got, f.Size())
			}
			var herr *HashError
			if _, err := f.Received("liar", 0, make([]byte, 300)); !errors.As(err, &herr) {
				t.Fatalf("liar's data: %v", err)
			}
			if got := drain(f, "slow", t1); !slices.Equal(got, []int{0, 1}) || f.Size() != size {
				t.Fatalf("slow asked %v, size %d", got, f.Size())
			}
			f.Received("slow", 0, piece(0))
			if done, err := f.Received("slow", 1, piece(1)); !done || err != nil {
				t.Fatalf("%v, %v", done, err)
			}
		}},
		{"SetSize after done", func(t *testing.T, f *Fetcher) {
			mustSize(t, f, "a", size)
			drain(f, "a", t0)
			f.Received("a", 0, piece(0))
			if done, err := f.Received("a", 1, piece(1)); !done || err != nil {
				t.Fatalf("%v, %v", done, err)
			}
			if err := f.SetSize("b", size); err != nil {
				t.Fatalf("same size after done: %v", err)
			}
			if err := f.SetSize("c", size+5); !errors.Is(err, ErrSizeMismatch) {
				t.Fatalf("other size after done: %v", err)
			}
			if _, ok := f.NextRequest("b", t0); ok {
				t.Fatal("asked after done")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, NewFetcher(hash, 0))
		})
	}
}

func mustSize(t *testing.T, f *Fetcher, id string, size int64) {
	t.Helper()
	if err := f.SetSize(id, size); err != nil {
		t.Fatalf("SetSize(%s, %d): %v", id, size, err)
	}
}

// drain returns every piece NextRequest gives id at now.
func drain(f *Fetcher, id string, now time.Time) []int {
	var got []int
	for range 100 {
		p, ok := f.NextRequest(id, now)
		if !ok {
			break
		}
		got = append(got, p)
	}
	return got
}

// TestRandomSwarms runs many seeded swarms of honest and hostile peers,
// joining at random times. Whatever the liars do, as long as one honest
// peer is there the fetch must finish, and no honest peer may be banned.
func TestRandomSwarms(t *testing.T) {
	real := makeInfo(t, 2500, 7) // 4 pieces
	others := [][]byte{makeInfo(t, 2500, 8), makeInfo(t, 1200, 9), infoOfSize(t, 500)}
	for seed := range uint64(300) {
		r := rand.New(rand.NewPCG(seed, 42))
		var peers []simPeer
		n := 1 + r.IntN(6)
		honestAt := r.IntN(n)
		for i := range n {
			p := simPeer{id: fmt.Sprintf("p%d", i), joinAt: r.IntN(40)}
			if i != honestAt && r.IntN(3) != 0 {
				p.how = behaviour(r.IntN(4))
				if r.IntN(2) == 0 {
					p.serves = others[r.IntN(len(others))]
				}
				if p.how == honest && p.serves == nil {
					p.how = corrupt // a liar must lie
				}
			}
			peers = append(peers, p)
		}
		f := NewFetcher(metainfo.Hash(sha1.Sum(real)), 0)
		out := simulate(t, f, real, peers, 1000)
		if !out.done || !bytes.Equal(f.Result(), real) {
			t.Fatalf("seed %d: not done after %d rounds: banned %v, hash errors %d, size errors %v, contributed %v; peers %s",
				seed, out.rounds, out.banned, out.hashErrs, out.sizeErrs, out.contributed, describe(peers, real))
		}
		for _, id := range out.banned {
			for _, p := range peers {
				if p.id == id && p.how == honest && bytes.Equal(p.serves, real) {
					t.Fatalf("seed %d: honest %s banned; peers %s", seed, id, describe(peers, real))
				}
			}
		}
	}
}

// describe prints simulated peers compactly for failure messages.
func describe(peers []simPeer, real []byte) string {
	var s []string
	for _, p := range peers {
		what := "real"
		if p.serves != nil && !bytes.Equal(p.serves, real) {
			what = fmt.Sprintf("other(%d bytes)", len(p.serves))
		}
		s = append(s, fmt.Sprintf("%s{how %d, serves %s, size %d, joins %d}", p.id, p.how, what, p.size, p.joinAt))
	}
	return strings.Join(s, " ")
}
