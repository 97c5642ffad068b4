package swarmtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// aria2 is one running aria2c with its JSON-RPC endpoint.
type aria2 struct {
	// proc is the running aria2c.
	proc *process
	// addr is where it accepts BitTorrent connections.
	addr netip.AddrPort
	// rpcURL is its JSON-RPC endpoint on 127.0.0.1.
	rpcURL string
	// secret is the RPC token (--rpc-secret).
	secret string
	// http is a client of its own, closed in cleanup.
	http *http.Client
}

// Seeder is an aria2c seeding one torrent from existing data.
type Seeder struct {
	// a is the running aria2c.
	a *aria2
	// dhtAddr is its DHT node's UDP address (StartAria2SeederDHT only).
	dhtAddr netip.AddrPort
}

// Leecher is an aria2c downloading one torrent.
type Leecher struct {
	// a is the running aria2c.
	a *aria2
}

// StartAria2Seeder runs aria2c on ip (a 127/8 address or ::1) seeding the torrent
// at torrentPath from dataDir, which holds the content under the torrent's
// name (MakeTorrent's dir). It trusts the data without hashing it
// (--bt-seed-unverified) and seeds until stopped. Start it only after the
// torrent's tracker answers (StartTracker returns then): after a failed
// announce aria2c waits minutes before the next. It returns once aria2c's
// RPC answers and its BitTorrent port accepts connections; it is stopped
// by PID in t.Cleanup. extra are more aria2c options, e.g.
// "--bt-require-crypto=true" (MSE only).
func StartAria2Seeder(t testing.TB, torrentPath, dataDir, ip string, extra ...string) *Seeder {
	t.Helper()
	return &Seeder{a: startAria2(t, torrentPath, dataDir, ip, append([]string{
		"--seed-ratio=0.0",
		"--bt-seed-unverified=true",
		"--check-integrity=false",
	}, extra...)...)}
}

// StartAria2SeederDHT is StartAria2Seeder with aria2c's DHT (BEP 5) on:
// its node listens on ip at a fresh UDP port (DHTAddr), joins the DHT
// through entry (a node the test runs on 127/8) and announces the torrent
// there. Its routing table goes to a file in a temporary directory, never
// to ~/.aria2. IPv6 DHT stays off.
func StartAria2SeederDHT(t testing.TB, torrentPath, dataDir, ip string, entry netip.AddrPort) *Seeder {
	t.Helper()
	Require(t, "aria2c")
	addr := checkLoopback(t, ip)
	if !entry.Addr().Is4() || !entry.Addr().IsLoopback() {
		t.Fatalf("swarmtest: DHT entry point %v is not on 127.0.0.0/8", entry)
	}
	port, err := freePort("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return &Seeder{
		a: startAria2(t, torrentPath, dataDir, ip,
			"--seed-ratio=0.0",
			"--bt-seed-unverified=true",
			"--check-integrity=false",
			// Later options override the --enable-dht=false of tryAria2.
			"--enable-dht=true",
			"--dht-listen-port="+strconv.Itoa(port),
			"--dht-entry-point="+entry.String(),
			"--dht-file-path="+filepath.Join(t.TempDir(), "dht.dat"),
		),
		dhtAddr: netip.AddrPortFrom(addr, uint16(port)),
	}
}

// DHTAddr is the seeder's DHT node (StartAria2SeederDHT), or the zero
// value when its DHT is off.
func (s *Seeder) DHTAddr() netip.AddrPort { return s.dhtAddr }

// StartAria2Leecher runs aria2c on ip (a 127/8 address or ::1) downloading the
// torrent at torrentPath into dir; it stops seeding as soon as it has
// everything (--seed-time=0). It re-announces every 2 s whatever the
// tracker says, so that it finds a peer that registers after it started.
// Wait tells when the download is complete.
func StartAria2Leecher(t testing.TB, torrentPath, dir, ip string) *Leecher {
	t.Helper()
	return &Leecher{a: startAria2(t, torrentPath, dir, ip,
		"--seed-time=0",
		"--bt-tracker-interval=2",
		"--file-allocation=none",
	)}
}

// startAria2 runs aria2c with the options every instance shares plus
// extra, on fresh ports, and waits until it is ready.
func startAria2(t testing.TB, torrentPath, dir, ip string, extra ...string) *aria2 {
	t.Helper()
	Require(t, "aria2c")
	addr := checkLoopback(t, ip)
	torrentPath, err := filepath.Abs(torrentPath)
	if err != nil {
		t.Fatal(err)
	}
	if dir, err = filepath.Abs(dir); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for range startAttempts {
		a, err := tryAria2(t, torrentPath, dir, addr, extra)
		if err == nil {
			return a
		}
		lastErr = err
	}
	t.Fatalf("swarmtest: aria2c did not start: %v", lastErr)
	return nil
}

// tryAria2 is one attempt of startAria2.
func tryAria2(t testing.TB, torrentPath, dir string, ip netip.Addr, extra []string) (*aria2, error) {
	port, err := freePort("tcp", ip)
	if err != nil {
		return nil, err
	}
	rpcPort, err := freePort("tcp", netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		return nil, err
	}
	secret := make([]byte, 12)
	rand.Read(secret)
	tr := &http.Transport{DisableKeepAlives: true}
	a := &aria2{
		addr:   netip.AddrPortFrom(ip, uint16(port)),
		rpcURL: fmt.Sprintf("http://127.0.0.1:%d/jsonrpc", rpcPort),
		secret: hex.EncodeToString(secret),
		http:   &http.Client{Transport: tr, Timeout: 10 * time.Second},
	}
	t.Cleanup(tr.CloseIdleConnections)
	args := []string{
		"--no-conf=true", // a user's ~/.aria2/aria2.conf must not change the test
		"--enable-dht=false", "--enable-dht6=false", "--bt-enable-lpd=false",
		"--enable-peer-exchange=false", "--disable-ipv6=" + strconv.FormatBool(ip.Is4()),
		"--interface=" + ip.String(), "--listen-port=" + strconv.Itoa(port),
		"--enable-rpc=true", "--rpc-listen-port=" + strconv.Itoa(rpcPort),
		"--rpc-listen-all=false", "--rpc-secret=" + a.secret,
		"--stop-with-process=" + strconv.Itoa(os.Getpid()),
		"--console-log-level=notice", "--summary-interval=0", "--show-console-readout=false",
		"-d", dir,
	}
	args = append(append(args, extra...), torrentPath)
	if a.proc, err = startProcess(t, dir, false, "aria2c", args...); err != nil {
		return nil, err
	}
	// aria2c's graceful exit takes a second (it says "stopped" to the
	// tracker on its next tick); a test gains nothing from it.
	a.proc.stopSignal = syscall.SIGKILL
	err = poll(20*time.Millisecond, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if _, err := a.call(ctx, "aria2.getVersion"); err != nil {
			return false
		}
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", a.addr.String())
		if err != nil {
			return false
		}
		c.Close()
		return true
	}, a.proc.exited)
	if err != nil {
		a.proc.stop()
		return nil, err
	}
	return a, nil
}

// call makes one JSON-RPC call and returns its result.
func (a *aria2) call(ctx context.Context, method string, params ...any) (json.RawMessage, error) {
	body, err := json.Marshal(map[string]any{
		"jsonrpc": "2.0", "id": "swarmtest", "method": method,
		"params": append([]any{"token:" + a.secret}, params...),
	})
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.rpcURL, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("aria2c rpc %s: %w", method, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("aria2c rpc %s: %w", method, err)
	}
	var r struct {
		Result json.RawMessage `json:"result"`
		Error  *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("aria2c rpc %s: reply %q: %w", method, raw, err)
	}
	if r.Error != nil {
		return nil, fmt.Errorf("aria2c rpc %s: error %d: %s", method, r.Error.Code, r.Error.Message)
	}
	return r.Result, nil
}

// download is the part of aria2's status of a download that tests read.
type download struct {
	Status          string `json:"status"`
	UploadLength    string `json:"uploadLength"`
	CompletedLength string `json:"completedLength"`
	TotalLength     string `json:"totalLength"`
	ErrorMessage    string `json:"errorMessage"`
}

var downloadKeys = []string{"status", "uploadLength", "completedLength", "totalLength", "errorMessage"}

// downloads lists the downloads that method ("aria2.tellActive", or
// "aria2.tellStopped" with offset and count) returns.
func (a *aria2) downloads(ctx context.Context, method string, params ...any) ([]download, error) {
	raw, err := a.call(ctx, method, append(params, downloadKeys)...)
	if err != nil {
		return nil, err
	}
	var ds []download
	if err := json.Unmarshal(raw, &ds); err != nil {
		return nil, fmt.Errorf("aria2c rpc %s: result %s: %w", method, raw, err)
	}
	return ds, nil
}

// uploadLength sums uploadLength over the active downloads.
func (a *aria2) uploadLength(ctx context.Context) (int64, error) {
	ds, err := a.downloads(ctx, "aria2.tellActive")
	if err != nil {
		return 0, err
	}
	var n int64
	for _, d := range ds {
		v, err := strconv.ParseInt(d.UploadLength, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("aria2c uploadLength %q: %w", d.UploadLength, err)
		}
		n += v
	}
	return n, nil
}

// Addr is where the seeder accepts BitTorrent connections.
func (s *Seeder) Addr() netip.AddrPort { return s.a.addr }

// PID is the seeder's process id.
func (s *Seeder) PID() int { return s.a.proc.cmd.Process.Pid }

// Stop kills the seeder now, as a peer that vanishes; cleanup would
// otherwise do it at the end of the test.
func (s *Seeder) Stop() { s.a.proc.stop() }

// UploadLength is the exact number of payload bytes the seeder has
// uploaded (aria2.tellActive's uploadLength).
func (s *Seeder) UploadLength(ctx context.Context) (int64, error) { return s.a.uploadLength(ctx) }

// Addr is where the leecher accepts BitTorrent connections.
func (l *Leecher) Addr() netip.AddrPort { return l.a.addr }

// PID is the leecher's process id.
func (l *Leecher) PID() int { return l.a.proc.cmd.Process.Pid }

// Stop kills the leecher now; cleanup would otherwise do it at the end
// of the test.
func (l *Leecher) Stop() { l.a.proc.stop() }

// Wait returns nil once the download is complete (every piece verified by
// aria2c), an error if aria2c reports one or exits, or ctx's error.
func (l *Leecher) Wait(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		ds, err := l.a.downloads(ctx, "aria2.tellStopped", 0, 10)
		if err == nil {
			for _, d := range ds {
				switch d.Status {
				case "complete":
					return nil
				case "error":
					return fmt.Errorf("aria2c leecher: download failed: %s", d.ErrorMessage)
				}
			}
		}
		if err := l.a.proc.exited(); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("aria2c leecher: %w (last RPC error: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}
