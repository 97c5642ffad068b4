package metadata

import (
	"bytes"
	"crypto/sha1"
	"fmt"
	"slices"

	"btfs/engine/wire"
)

// Received files a piece that peer id sent in a ut_metadata data message
// (wire.ParseMetadataMsg has checked the message; data is copied, so it
// may alias the read buffer). done is true exactly once: when this piece
// completed a dictionary that hashes to the info-hash, now in Result.
//
// Errors: ErrUnrequested (not asked of this peer in this attempt: dropped,
// nobody is banned), ErrBanned, ErrBadLength (the peer is banned), or a
// *HashError when the last piece completed a dictionary with the wrong
// hash: everything is dropped, the proven liars are banned, and the fetch
// starts over. A piece that another peer already delivered is dropped
// without error. After done, Received does nothing.
func (f *Fetcher) Received(id string, index int, data []byte) (done bool, err error) {
	if f.banned[id] {
		return false, fmt.Errorf("peer %s: piece %d: %w", id, index, ErrBanned)
	}
	if f.result != nil {
		return false, nil
	}
	if index < 0 || index >= len(f.pieces) || !hasRequest(f.pieces[index].reqs, id) {
		return false, fmt.Errorf("peer %s: piece %d: %w", id, index, ErrUnrequested)
	}
	pc := &f.pieces[index]
	pc.reqs = dropRequests(pc.reqs, id)
	if want := wire.MetadataPieceLen(f.size, index); len(data) != want {
		f.ban(id)
		f.elect()
		return false, fmt.Errorf("peer %s: piece %d of a %d-byte dictionary has %d bytes, want %d: %w", id, index, f.size, len(data), want, ErrBadLength)
	}
	if p := f.peers[id]; p != nil {
		p.stalled = false
	}
	if pc.data != nil {
		return false, nil
	}
	pc.data, pc.from = bytes.Clone(data), id
	f.received++
	if f.received < len(f.pieces) {
		return false, nil
	}
	return f.verify()
}

// verify hashes a complete attempt. On success it keeps the result and
// settles the smart-ban record; on failure it bans a sole contributor, or
// keeps the attempt as the record and switches to single mode, and starts
// over.
func (f *Fetcher) verify() (bool, error) {
	buf := make([]byte, 0, f.size)
	for _, pc := range f.pieces {
		buf = append(buf, pc.data...)
	}
	pieces := f.pieces
	f.pieces, f.received = nil, 0
	if sha1.Sum(buf) == [20]byte(f.infoHash) {
		f.result = buf
		f.single, f.owner = false, ""
		for i, sp := range f.suspect {
			start := i * wire.MetadataPieceSize
			if sp.data != nil && len(sp.data) == wire.MetadataPieceLen(f.size, i) && !bytes.Equal(sp.data, buf[start:start+len(sp.data)]) {
				f.ban(sp.from)
			}
		}
		f.suspect = nil
		return true, nil
	}
	var contributors []string
	for _, pc := range pieces {
		if !slices.Contains(contributors, pc.from) {
			contributors = append(contributors, pc.from)
		}
	}
	slices.Sort(contributors)
	herr := &HashError{InfoHash: f.infoHash, Size: f.size, Contributors: contributors}
	f.restart()
	if len(contributors) == 1 {
		f.ban(contributors[0])
		herr.Banned = []string{contributors[0]}
	} else {
		f.suspect = pieces
		f.single = true
	}
	f.elect()
	return false, herr
}
