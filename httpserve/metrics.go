package httpserve

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"btfs/stream"
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
	descWants    = prometheus.NewDesc("btfs_wants", "Byte ranges readers want now (blocked reads, readahead windows, media heads and tails), as the engine last read them.", []string{"infohash"}, nil)
	descDownRate = prometheus.NewDesc("btfs_download_rate_bytes", "Payload download rate now, bytes/s (smoothed).", []string{"infohash"}, nil)
	descUpRate   = prometheus.NewDesc("btfs_upload_rate_bytes", "Payload upload rate now, bytes/s (smoothed).", []string{"infohash"}, nil)
	descCache    = prometheus.NewDesc("btfs_cache_bytes", "Bytes of verified pieces in the torrent's shared cache (every process's).", []string{"infohash"}, nil)
	descCacheCap = prometheus.NewDesc("btfs_cache_cap_bytes", "The torrent's cache cap (0: none).", []string{"infohash"}, nil)
	descEvicted  = prometheus.NewDesc("btfs_cache_evictions_total", "Pieces this process evicted from the cache (cap or full disk).", []string{"infohash"}, nil)

	// The reads of every stream.Reader of the process, by path: "fuse"
	// (the mount's handles) or "http".
	descWait    = prometheus.NewDesc("btfs_read_wait_seconds", "How long a read of a torrent's bytes waited for them, by path (fuse, http).", []string{"path"}, nil)
	descHits    = prometheus.NewDesc("btfs_readahead_hits_total", "Reads whose bytes were verified and inside the reader's readahead window when they came, by path.", []string{"path"}, nil)
	descReaders = prometheus.NewDesc("btfs_readers", "Readers open now (FUSE handles, HTTP responses), by path.", []string{"path"}, nil)
)

// statsTimeout bounds a scrape's wait for one torrent's stats (they are
// taken on the engine's loop).
const statsTimeout = 2 * time.Second

// collector asks each torrent's Stats at scrape time: nothing is copied
// between scrapes, and a torrent gone is gone from the next scrape.
type collector struct{ s *Server }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDown, descUp, descPeers, descVerified, descPieces, descHashFail, descBanned,
		descWants, descDownRate, descUpRate, descCache, descCacheCap, descEvicted, descWait, descHits, descReaders} {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	// Both paths always appear, so that a dashboard's query has a series
	// before the first read.
	open := map[string]int{"fuse": 0, "http": 0}
	for _, r := range c.s.readers.Readers() {
		open[r.Kind]++
	}
	stats := c.s.readers.Stats()
	for path, n := range open {
		ch <- prometheus.MustNewConstMetric(descReaders, prometheus.GaugeValue, float64(n), path)
		st := stats[path]
		buckets := make(map[float64]uint64, len(stream.WaitBuckets))
		var cum uint64
		for i, b := range stream.WaitBuckets {
			if i < len(st.WaitCounts) {
				cum += st.WaitCounts[i]
			}
			buckets[b] = cum
		}
		ch <- prometheus.MustNewConstHistogram(descWait, st.Reads, st.WaitSum, buckets, path)
		ch <- prometheus.MustNewConstMetric(descHits, prometheus.CounterValue, float64(st.ReadaheadHits), path)
	}
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
		ch <- prometheus.MustNewConstMetric(descWants, prometheus.GaugeValue, float64(st.Wants), ih)
		ch <- prometheus.MustNewConstMetric(descDownRate, prometheus.GaugeValue, st.DownloadRate, ih)
		ch <- prometheus.MustNewConstMetric(descUpRate, prometheus.GaugeValue, st.UploadRate, ih)
		if st.Cache != nil {
			ch <- prometheus.MustNewConstMetric(descCache, prometheus.GaugeValue, float64(st.Cache.Bytes), ih)
			ch <- prometheus.MustNewConstMetric(descCacheCap, prometheus.GaugeValue, float64(st.Cache.Cap), ih)
			ch <- prometheus.MustNewConstMetric(descEvicted, prometheus.CounterValue, float64(st.Cache.Evictions), ih)
		}
	}
}
