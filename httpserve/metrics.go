package httpserve

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Descriptions of the per-torrent metrics, labelled by info-hash.
var (
	descDown     = prometheus.NewDesc("btfs_downloaded_bytes_total", "Payload bytes downloaded this session.", []string{"infohash"}, nil)
	descUp       = prometheus.NewDesc("btfs_uploaded_bytes_total", "Payload bytes uploaded this session.", []string{"infohash"}, nil)
	descPeers    = prometheus.NewDesc("btfs_peers", "Peers connected now.", []string{"infohash"}, nil)
	descVerified = prometheus.NewDesc("btfs_pieces_verified", "Pieces verified now, resumed ones included.", []string{"infohash"}, nil)
	descPieces   = prometheus.NewDesc("btfs_pieces", "Pieces in the torrent.", []string{"infohash"}, nil)
	descHashFail = prometheus.NewDesc("btfs_hash_failures_total", "Pieces that failed their hash check.", []string{"infohash"}, nil)
	descBanned   = prometheus.NewDesc("btfs_banned_peers", "Peers banned.", []string{"infohash"}, nil)
)

// statsTimeout bounds a scrape's wait for one torrent's stats (they are
// taken on the engine's loop).
const statsTimeout = 2 * time.Second

// collector asks each torrent's Stats at scrape time: nothing is copied
// between scrapes, and a torrent gone is gone from the next scrape.
type collector struct{ s *Server }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDown, descUp, descPeers, descVerified, descPieces, descHashFail, descBanned} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, t := range c.s.cfg.Torrents.Torrents() {
		if t.Stats == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
		st, err := t.Stats(ctx)
		cancel()
		if err != nil {
			c.s.log.Debug("metrics: stats", "infohash", t.InfoHash, "err", err)
			continue
		}
		ih := t.InfoHash.String()
		ch <- prometheus.MustNewConstMetric(descDown, prometheus.CounterValue, float64(st.Downloaded), ih)
		ch <- prometheus.MustNewConstMetric(descUp, prometheus.CounterValue, float64(st.Uploaded), ih)
		ch <- prometheus.MustNewConstMetric(descPeers, prometheus.GaugeValue, float64(st.Peers), ih)
		ch <- prometheus.MustNewConstMetric(descVerified, prometheus.GaugeValue, float64(st.PiecesVerified), ih)
		ch <- prometheus.MustNewConstMetric(descPieces, prometheus.GaugeValue, float64(st.Pieces), ih)
		ch <- prometheus.MustNewConstMetric(descHashFail, prometheus.CounterValue, float64(st.HashFailures), ih)
		ch <- prometheus.MustNewConstMetric(descBanned, prometheus.GaugeValue, float64(st.Banned), ih)
	}
}
