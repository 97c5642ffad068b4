package engine

import (
	"context"
	"net"
	"net/netip"

	"btfs/engine/wire"
	"btfs/webseed"
)

// webSeedAddr is the made-up address of the i-th webseed, in the IPv6
// discard prefix 100::/64 (RFC 6666): nothing can ever be dialled there,
// yet it is an address to keep rates, blame and bans by, like a peer's.
// Webseeds are never in known (nobody dials them), never in PEX (they have
// no listen address).
func webSeedAddr(i int) netip.AddrPort {
	a := [16]byte{0: 0x01}
	a[14], a[15] = byte(i>>8), byte(i)
	return netip.AddrPortFrom(netip.AddrFrom16(a), uint16(i+1))
}

// startWebSeeds connects every webseed of the torrent (BEP 19 url-list) as
// a peer: webseed.Serve answers on one end of a pipe, the engine holds the
// other, and from then on a webseed is scheduled, measured, blamed and
// banned like any peer. Once dropped (its bytes failed, or the server
// cannot serve the files) it is not connected again.
func (s *state) startWebSeeds() {
	if s.t.cfg.NoWebSeeds || s.isComplete() {
		return
	}
	client := webseed.NewClient() // one per torrent: its connection cap per host is shared by the torrent's webseeds
	context.AfterFunc(s.t.ctx, client.CloseIdleConnections)
	for i, u := range s.t.mi.URLList {
		if i >= maxWebSeeds {
			break
		}
		ours, theirs := net.Pipe()
		addr := webSeedAddr(i)
		s.t.wg.Add(2)
		go func() {
			defer s.t.wg.Done()
			err := webseed.Serve(s.t.ctx, theirs, s.t.info, s.t.mi.InfoHash, u, webseed.Config{Logger: s.t.log, Client: client})
			if s.t.ctx.Err() == nil {
				s.t.log.Info("webseed gone", "url", u, "err", err)
			}
		}()
		go func() {
			defer s.t.wg.Done()
			hs, err := wire.Initiate(s.t.ctx, ours, s.t.ours)
			if err != nil {
				ours.Close()
				return
			}
			if !s.t.post(s.t.ctx, connEvent{conn: ours, addr: addr, hs: hs}) {
				ours.Close()
			}
		}()
	}
}

// maxWebSeeds bounds the webseeds used per torrent.
const maxWebSeeds = 8
