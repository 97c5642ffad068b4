package picker

import (
	"fmt"

	"btfs/bitfield"
)

// level is one availability bucket: the pickable pieces that exactly k
// registered partial peers have. Pieces that failed a hash check sit in the
// second part, scanned after the first.
type level struct {
	// parts[0] holds the pieces in normal standing, parts[1] the bumped ones.
	parts [2][]int32
}

// AddPeer registers a peer's bitfield (BEP 3 bitfield message): every piece
// it has gains one availability. It costs O(pieces it has). Register a peer
// that sent have-all with AddSeed instead, and one that sent have-none (or
// nothing) with nothing at all, or with its empty bitfield. Keep the picker
// in step with the bitfield afterwards: call Have for each piece newly set
// in it, and RemovePeer with it when the peer goes.
func (p *Picker) AddPeer(has *bitfield.Bitfield) error {
	if has.Len() != p.n {
		return fmt.Errorf("picker: peer bitfield of %d pieces, torrent has %d", has.Len(), p.n)
	}
	for i, ok := has.NextSet(0); ok; i, ok = has.NextSet(i + 1) {
		p.incAvail(i)
	}
	return nil
}

// RemovePeer unregisters a peer registered with AddPeer, passing its
// bitfield as it is now (with every Have applied): every piece it has loses
// one availability.
func (p *Picker) RemovePeer(has *bitfield.Bitfield) error {
	if has.Len() != p.n {
		return fmt.Errorf("picker: peer bitfield of %d pieces, torrent has %d", has.Len(), p.n)
	}
	for i, ok := has.NextSet(0); ok; i, ok = has.NextSet(i + 1) {
		p.decAvail(i)
	}
	return nil
}

// Have records a HAVE for piece i from a peer registered with AddPeer. Call
// it only when the bit is new in that peer's bitfield (bitfield.Set returned
// true), so that duplicate HAVEs do not inflate availability. O(1).
func (p *Picker) Have(i int) {
	if p.valid(i) {
		p.incAvail(i)
	}
}

// AddSeed registers a peer that has every piece (BEP 6 have-all, or a
// bitfield with every bit set if the engine prefers): O(1), since adding one
// to every piece changes no ordering.
func (p *Picker) AddSeed() { p.seeds++ }

// RemoveSeed unregisters a peer registered with AddSeed.
func (p *Picker) RemoveSeed() {
	if p.seeds > 0 {
		p.seeds--
	}
}

// Seeds is the number of registered have-all peers.
func (p *Picker) Seeds() int { return p.seeds }

// Availability is how many registered peers have piece i, seeds included.
func (p *Picker) Availability(i int) int {
	if !p.valid(i) {
		return 0
	}
	return int(p.avail[i]) + p.seeds
}

// incAvail adds one availability to piece i, moving it up a bucket.
func (p *Picker) incAvail(i int) {
	if !p.state[i].pickable() {
		p.avail[i]++
		return
	}
	p.bucketRemove(i)
	p.avail[i]++
	p.bucketInsert(i)
}

// decAvail removes one availability from piece i, moving it down a bucket.
// It never goes below zero, whatever the engine does.
func (p *Picker) decAvail(i int) {
	if p.avail[i] == 0 {
		return
	}
	if !p.state[i].pickable() {
		p.avail[i]--
		return
	}
	p.bucketRemove(i)
	p.avail[i]--
	p.bucketInsert(i)
}

// part is which part of its bucket piece i belongs in.
func (p *Picker) part(i int) int {
	if p.bumped.Has(i) {
		return 1
	}
	return 0
}

// bucketInsert puts pickable piece i into the bucket for its availability,
// and lowers its word's rank bound if it is now below it (invariant 8).
func (p *Picker) bucketInsert(i int) {
	k := int(p.avail[i])
	for k >= len(p.levels) {
		p.levels = append(p.levels, level{})
	}
	part := p.part(i)
	items := &p.levels[k].parts[part]
	p.levelPos[i] = int32(len(*items))
	*items = append(*items, int32(i))
	w := &p.wordMin[i/wordPieces]
	*w = min(*w, int32(2*k+part))
}

// bucketRemove takes piece i out of its bucket, moving the bucket's last
// piece into its place.
func (p *Picker) bucketRemove(i int) {
	items := &p.levels[p.avail[i]].parts[p.part(i)]
	j := p.levelPos[i]
	last := (*items)[len(*items)-1]
	(*items)[j] = last
	p.levelPos[last] = j
	*items = (*items)[:len(*items)-1]
}
