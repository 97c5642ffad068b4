package swarmtest

import (
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Nginx is an nginx (as Debian packages it) serving a directory over HTTP
// on a loopback address: a webseed (BEP 19) with real Range support and
// keep-alive.
type Nginx struct {
	proc *process
	url  string
	log  string // the access log: "STATUS BYTES URI" a line
}

// StartNginx serves root at http://IP:PORT/ (ip in 127/8, a free port),
// with its config, pid file, logs and temp files in a directory of t's,
// in the foreground, stopped by PID in t's cleanup. It returns once nginx
// answers.
func StartNginx(t testing.TB, root, ip string) *Nginx {
	t.Helper()
	Require(t, "nginx")
	addr := checkLoopback(t, ip)
	var lastErr error
	for range 3 {
		port, err := freePort("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		n, err := tryNginx(t, root, netip.AddrPortFrom(addr, uint16(port)))
		if err == nil {
			return n
		}
		lastErr = err
	}
	t.Fatalf("swarmtest: nginx did not start: %v", lastErr)
	return nil
}

func tryNginx(t testing.TB, root string, addr netip.AddrPort) (*Nginx, error) {
	dir := t.TempDir()
	user := "" // workers run as root too when we are root: the test's files are 0700
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	conf := fmt.Sprintf(`daemon off;
%[4]s
master_process on;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 64; }
http {
	log_format btfs '$status $body_bytes_sent $request_uri';
	access_log %[1]s/access.log btfs;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	sendfile on;
	keepalive_timeout 60;
	types { application/octet-stream bin; }
	default_type application/octet-stream;
	server {
		listen %[2]s;
		root %[3]s;
		location / { }
	}
}
`, dir, addr, root, user)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	p, err := startProcess(t, dir, false, "nginx", "-p", dir, "-e", filepath.Join(dir, "error.log"), "-c", confPath)
	if err != nil {
		return nil, err
	}
	n := &Nginx{proc: p, url: "http://" + addr.String() + "/", log: filepath.Join(dir, "access.log")}
	err = poll(20*time.Millisecond, func() bool {
		resp, err := http.Head(n.url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	}, p.exited)
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("nginx on %s: %w", addr, err)
	}
	return n, nil
}

// URL is the root's URL, ending in '/'.
func (n *Nginx) URL() string { return n.url }

// PID is nginx's master process.
func (n *Nginx) PID() int { return n.proc.cmd.Process.Pid }

// BytesSent is the body bytes nginx has sent for the requests logged so far
// with a status in 200-299 (each is logged when it ends).
func (n *Nginx) BytesSent() (int64, error) {
	b, err := os.ReadFile(n.log)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(f[0], "2") {
			continue
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("nginx access log line %q: %w", line, err)
		}
		total += v
	}
	return total, nil
}
