package swarmtest

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// stopGrace is how long a program has to exit after SIGTERM before it is
// killed.
const stopGrace = 3 * time.Second

// maxOutput bounds the output kept of one program; past it the oldest
// half is dropped.
const maxOutput = 1 << 20

// process is one program started by a helper.
type process struct {
	// name is the program's name, for logs.
	name string
	// cmd is the running command.
	cmd *exec.Cmd
	// out collects stdout and stderr.
	out *tailBuffer
	// done is closed when the program has exited and been reaped.
	done chan struct{}
	// err is Wait's result, readable once done is closed.
	err error
	// stopSignal is the first signal stop sends: SIGTERM, or SIGKILL for
	// programs whose graceful exit is slow and buys a test nothing.
	stopSignal syscall.Signal
}

// startProcess runs bin with args in dir, its output captured. With
// asNobody, a root test runs it as user nobody (for daemons that refuse
// root, and so that they never hold it). The program gets SIGKILL if the
// test binary dies. It is stopped by PID and its output logged (when the
// test failed) in t.Cleanup.
func startProcess(t testing.TB, dir string, asNobody bool, bin string, args ...string) (*process, error) {
	t.Helper()
	p := &process{name: bin, out: &tailBuffer{}, done: make(chan struct{}), stopSignal: syscall.SIGTERM}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.WaitDelay = stopGrace
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if asNobody && os.Geteuid() == 0 {
		cred, err := nobody()
		if err != nil {
			return nil, err
		}
		p.cmd.SysProcAttr.Credential = cred
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("swarmtest: start %s: %w", bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("swarmtest: %s (pid %d) %s; its output:\n%s", bin, p.cmd.Process.Pid, p.state(), p.out.String())
		}
	})
	return p, nil
}

// exited returns a non-nil error once the program has exited.
func (p *process) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v); output:\n%s", p.name, p.err, p.out.String())
	default:
		return nil
	}
}

// state says whether the program is still running, for logs.
func (p *process) state() string {
	select {
	case <-p.done:
		return fmt.Sprintf("exited: %v", p.err)
	default:
		return "running"
	}
}

// stop sends stopSignal to the program's PID, then SIGKILL after
// stopGrace, and waits until it is reaped. It is safe to call more than
// once, from one goroutine at a time.
func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(p.stopSignal)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// nobody returns the credentials of user nobody.
func nobody() (*syscall.Credential, error) {
	u, err := user.Lookup("nobody")
	if err != nil {
		return nil, fmt.Errorf("swarmtest: %w", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("swarmtest: uid of nobody: %w", err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("swarmtest: gid of nobody: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}, nil
}

// tailBuffer is a goroutine-safe buffer that keeps at most maxOutput bytes,
// dropping the oldest.
type tailBuffer struct {
	// mu guards b.
	mu sync.Mutex
	// b holds the kept output.
	b bytes.Buffer
}

func (w *tailBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Write(p)
	if w.b.Len() > maxOutput {
		w.b.Next(w.b.Len() - maxOutput/2)
	}
	return len(p), nil
}

func (w *tailBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// peerProcess is a peer program a test started: its process and where it
// accepts BitTorrent connections. Seeders embed it.
type peerProcess struct {
	// proc is the running program.
	proc *process
	// addr is where it accepts BitTorrent connections.
	addr netip.AddrPort
}

// Addr is where the peer accepts BitTorrent connections.
func (p *peerProcess) Addr() netip.AddrPort { return p.addr }

// PID is the peer's process id.
func (p *peerProcess) PID() int { return p.proc.cmd.Process.Pid }

// Stop ends the peer now; cleanup would otherwise do it at the end of the
// test.
func (p *peerProcess) Stop() { p.proc.stop() }

// waitListening waits until ready says the program is up and its port is
// taken (by it, not by another it fell back to: portTaken asks without
// connecting), or stops it if it exits first.
func (p *peerProcess) waitListening(ready func() bool) error {
	err := poll(20*time.Millisecond, func() bool { return ready() && portTaken(p.addr) }, p.proc.exited)
	if err != nil {
		p.proc.stop()
	}
	return err
}
