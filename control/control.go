// Package control is how `btfs add`, `rm` and `ls` talk to the btfs that
// serves a library mount: one JSON request and one JSON response per
// connection over a Unix socket that only the owner may use (the socket is
// 0600 in a 0700 directory, and the server checks the peer's uid with
// SO_PEERCRED, so a socket made reachable by mistake still refuses other
// users).
package control

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// MaxRequest caps a request: a .torrent travels inside it.
const MaxRequest = 80 << 20

// Request is one command.
type Request struct {
	// Op is "add", "rm" or "ls".
	Op string `json:"op"`
	// Source is a magnet link or an http(s) URL of a torrent (add).
	Source string `json:"source,omitempty"`
	// Torrent is a .torrent file's bytes (add, read by the caller so that
	// relative paths are the caller's).
	Torrent []byte `json:"torrent,omitempty"`
	// Name is a torrent's directory name or info-hash (rm).
	Name string `json:"name,omitempty"`
}

// Entry describes one torrent of the library.
type Entry struct {
	Name     string  `json:"name"`
	InfoHash string  `json:"infohash"`
	Size     int64   `json:"size"`
	Verified int64   `json:"verified"`
	Down     float64 `json:"down"`
	Up       float64 `json:"up"`
	Peers    int     `json:"peers"`
	State    string  `json:"state"`
}

// Response answers a Request.
type Response struct {
	// Error is set when the command failed.
	Error string `json:"error,omitempty"`
	// Entries: the torrent added or removed, or the list.
	Entries []Entry `json:"entries,omitempty"`
	// Goroutines is the serving process's count (ls): what the torrents
	// cost, for people watching a big library and for the scale test.
	Goroutines int `json:"goroutines,omitempty"`
}

// Handler carries the commands out.
type Handler interface {
	Add(ctx context.Context, req Request) (Entry, error)
	Remove(ctx context.Context, name string) (Entry, error)
	List(ctx context.Context) ([]Entry, error)
}

// requestTimeout bounds one connection's request and answer.
const requestTimeout = 2 * time.Minute

// SocketPath is where the server of the library mounted at mountpoint
// listens unless told otherwise: under $XDG_RUNTIME_DIR/btfs, else
// $TMPDIR/btfs-UID, named after the mount point's absolute path (a Unix
// socket path must stay under 108 bytes, so a hash, not the path).
func SocketPath(mountpoint string) string {
	abs, err := filepath.Abs(mountpoint)
	if err != nil {
		abs = mountpoint
	}
	sum := sha256.Sum256([]byte(abs))
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir != "" {
		dir = filepath.Join(dir, "btfs")
	} else {
		dir = filepath.Join(os.TempDir(), "btfs-"+strconv.Itoa(os.Getuid()))
	}
	return filepath.Join(dir, hex.EncodeToString(sum[:10])+".sock")
}

// Server answers requests on a Unix socket until Close.
type Server struct {
	ln   *net.UnixListener
	path string
	h    Handler
	log  *slog.Logger
	uid  int
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup
}

// Listen makes the socket at path (its directory 0700, the socket 0600),
// replacing a stale one a killed btfs left, and serves h on it.
func Listen(path string, h Handler, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("control: %s is served by another btfs", path)
	}
	os.Remove(path) // stale: nobody answers
	old := unix.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control: %w", err)
	}
	s := &Server{ln: ln, path: path, h: h, log: log, uid: os.Geteuid()}
	s.ctx, s.stop = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Close stops serving, removes the socket and waits for the requests
// under way.
func (s *Server) Close() error {
	s.stop()
	err := s.ln.Close() // removes the socket file
	s.wg.Wait()
	return err
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer c.Close()
			s.handle(c)
		}()
	}
}

// PeerUID is the uid of the process at the other end of c (SO_PEERCRED).
func PeerUID(c *net.UnixConn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, cerr
	}
	return int(cred.Uid), nil
}

// handle answers one connection.
func (s *Server) handle(c *net.UnixConn) {
	ctx, cancel := context.WithTimeout(s.ctx, requestTimeout)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	uid, err := PeerUID(c)
	if err != nil || uid != s.uid {
		s.log.Warn("control: connection refused: not the owner", "peer_uid", uid, "err", err)
		writeResponse(c, Response{Error: fmt.Sprintf("refused: this btfs belongs to uid %d, you are uid %d", s.uid, uid)})
		// The request is read and dropped (bounded, within the request
		// timeout) rather than left unread: closing over unread data
		// resets the connection, and the caller might not see why.
		_ = c.CloseWrite()
		_, _ = io.Copy(io.Discard, io.LimitReader(c, MaxRequest))
		return
	}
	req, err := DecodeRequest(bufio.NewReader(c))
	if err != nil {
		writeResponse(c, Response{Error: err.Error()})
		return
	}
	writeResponse(c, s.do(ctx, req))
}

// do carries out req.
func (s *Server) do(ctx context.Context, req Request) Response {
	var resp Response
	var err error
	switch req.Op {
	case "add":
		var e Entry
		if e, err = s.h.Add(ctx, req); err == nil {
			resp.Entries = []Entry{e}
		}
	case "rm":
		var e Entry
		if e, err = s.h.Remove(ctx, req.Name); err == nil {
			resp.Entries = []Entry{e}
		}
	case "ls":
		resp.Entries, err = s.h.List(ctx)
		resp.Goroutines = runtime.NumGoroutine()
	default:
		err = fmt.Errorf("unknown command %q", req.Op)
	}
	if err != nil {
		resp.Error = err.Error()
	}
	return resp
}

// DecodeRequest reads one request, at most MaxRequest bytes of JSON.
func DecodeRequest(r io.Reader) (Request, error) {
	var req Request
	dec := json.NewDecoder(io.LimitReader(r, MaxRequest))
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("control: bad request: %w", err)
	}
	switch req.Op {
	case "add":
		if (req.Source == "") == (len(req.Torrent) == 0) {
			return req, errors.New("control: add needs a source or a torrent, not both")
		}
	case "rm":
		if req.Name == "" {
			return req, errors.New("control: rm needs a name")
		}
	case "ls":
	default:
		return req, fmt.Errorf("control: unknown command %q", req.Op)
	}
	return req, nil
}

func writeResponse(w io.Writer, resp Response) {
	_ = json.NewEncoder(w).Encode(resp)
}

// Call sends req to the server at path and returns its answer; an answer
// with Error set is returned as an error.
func Call(ctx context.Context, path string, req Request) ([]Entry, error) {
	resp, err := Do(ctx, path, req)
	return resp.Entries, err
}

// Do is Call with the whole response.
func Do(ctx context.Context, path string, req Request) (Response, error) {
	var d net.Dialer
	var resp Response
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return resp, fmt.Errorf("control: %w (is a library mounted there, by you?)", err)
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	// A server that refuses us (another user's) answers and closes
	// without reading the request: a write that fails then still leaves
	// its answer to read, and that answer says why.
	werr := json.NewEncoder(c).Encode(req)
	if err := json.NewDecoder(io.LimitReader(c, MaxRequest)).Decode(&resp); err != nil {
		if werr != nil {
			return resp, fmt.Errorf("control: %w", werr)
		}
		return resp, fmt.Errorf("control: no answer: %w", err)
	}
	if resp.Error != "" {
		return resp, errors.New(resp.Error)
	}
	return resp, nil
}
