package cache

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// owner identifies one Store of one process, in claim files, partial file
// names and urgency markers: "NS-PID-START-NONCE". NS is the inode of the
// process's PID namespace (a pid means something only inside its
// namespace), START the process's start time in clock ticks since boot (so
// that a pid reused by a later process is not taken for the owner), and
// NONCE tells two Stores of one process apart (tests open several). It has
// no dots and no slashes, so that it can end a file name.
type owner struct {
	// ns is the PID namespace's inode; 0 when unknown.
	ns uint64
	// pid is the process id inside ns.
	pid int
	// start is the process's start time (field 22 of /proc/PID/stat).
	start uint64
	// nonce tells apart the Stores of one process.
	nonce uint32
}

// String is the owner's name in file names and claim files.
func (o owner) String() string {
	return fmt.Sprintf("%d-%d-%d-%08x", o.ns, o.pid, o.start, o.nonce)
}

// parseOwner reads an owner's name; false for anything else.
func parseOwner(s string) (owner, bool) {
	parts := strings.Split(strings.TrimSpace(s), "-")
	if len(parts) != 4 {
		return owner{}, false
	}
	var o owner
	var err error
	var pid, nonce uint64
	if o.ns, err = strconv.ParseUint(parts[0], 10, 64); err != nil {
		return owner{}, false
	}
	if pid, err = strconv.ParseUint(parts[1], 10, 31); err != nil || pid == 0 {
		return owner{}, false
	}
	if o.start, err = strconv.ParseUint(parts[2], 10, 64); err != nil {
		return owner{}, false
	}
	if nonce, err = strconv.ParseUint(parts[3], 16, 32); err != nil {
		return owner{}, false
	}
	o.pid, o.nonce = int(pid), uint32(nonce)
	return o, true
}

// self returns this process's identity with a fresh nonce.
func self() (owner, error) {
	pid := os.Getpid()
	start, _, err := procStart(pid)
	if err != nil {
		return owner{}, fmt.Errorf("cache: own start time: %w", err)
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return owner{}, fmt.Errorf("cache: nonce: %w", err)
	}
	return owner{ns: pidNamespace(), pid: pid, start: start, nonce: binary.LittleEndian.Uint32(b[:])}, nil
}

// pidNamespace is the inode of this process's PID namespace, 0 if unknown.
func pidNamespace() uint64 {
	link, err := os.Readlink("/proc/self/ns/pid") // "pid:[4026531836]"
	if err != nil {
		return 0
	}
	_, num, ok := strings.Cut(link, "[")
	if !ok {
		return 0
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(num, "]"), 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// procStart returns the start time and state letter of process pid, from
// /proc/PID/stat. A process that does not exist gives fs.ErrNotExist.
func procStart(pid int) (start uint64, state byte, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// "PID (COMM) STATE PPID ...": COMM may hold spaces and parentheses,
	// so the fields are counted from the last ')'.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: no command", pid)
	}
	fields := strings.Fields(string(data[i+1:]))
	// fields[0] is field 3 (state); starttime is field 22.
	if len(fields) < 20 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields)+2)
	}
	start, err = strconv.ParseUint(fields[19], 10, 64)
	if err != nil || len(fields[0]) != 1 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: bad start time or state", pid)
	}
	return start, fields[0][0], nil
}

// liveness is what this process can tell about an owner.
type liveness int8

const (
	// unknownLiveness: the owner lives in another PID namespace (another
	// container): only the claim time-out can tell.
	unknownLiveness liveness = iota
	// alive: its process runs.
	alive
	// dead: its process is gone (or is a zombie, or its pid now belongs to
	// a process that started at another time).
	dead
)

// liveness tells whether o's process still runs, as far as we can see.
func (o owner) liveness(me owner) liveness {
	if o.ns == 0 || o.ns != me.ns {
		return unknownLiveness
	}
	start, state, err := procStart(o.pid)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return dead
	case err != nil:
		return unknownLiveness
	case start != o.start || state == 'Z' || state == 'X':
		return dead
	}
	return alive
}
