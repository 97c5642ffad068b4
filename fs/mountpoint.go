package fs

import (
	"bufio"
	"errors"
	"fmt"
	iofs "io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Recover detaches a stale FUSE mount at mountpoint, one whose server died
// (a btfs killed with -9, a crash) and which answers every access with
// "transport endpoint is not connected" (ENOTCONN) until it is unmounted.
// It detaches it lazily (umount -l; fusermount3 -u -z when not root) and
// reports whether it did. A healthy mount, a plain directory or a missing
// path are left alone: (false, nil); Mount reports what is wrong with them.
func Recover(mountpoint string) (bool, error) {
	dir, err := filepath.Abs(mountpoint)
	if err != nil {
		return false, fmt.Errorf("fs: recover %s: %w", mountpoint, err)
	}
	if !isStale(dir) {
		return false, nil
	}
	if err := detach(dir); err != nil {
		return false, fmt.Errorf("fs: recover stale mount %s: %w", dir, err)
	}
	return true, nil
}

// isStale reports whether dir is the mount point of a FUSE mount whose
// server is gone. statfs comes first: the kernel always forwards it to the
// server, while stat may be answered from attributes cached before the
// server died (btfs caches them for a day), and then looks healthy.
func isStale(dir string) bool {
	dead := func(err error) bool { return errors.Is(err, unix.ENOTCONN) || errors.Is(err, unix.ECONNABORTED) }
	var sf unix.Statfs_t
	if dead(unix.Statfs(dir, &sf)) {
		return true
	}
	var st unix.Stat_t
	return dead(unix.Stat(dir, &st))
}

// detach unmounts dir lazily: MNT_DETACH as root, fusermount3 -u -z
// otherwise.
func detach(dir string) error {
	err := unix.Unmount(dir, unix.MNT_DETACH)
	if err == nil || !errors.Is(err, unix.EPERM) {
		return err
	}
	out, ferr := exec.Command("fusermount3", "-u", "-z", dir).CombinedOutput()
	if ferr != nil {
		return fmt.Errorf("%w; fusermount3 -u -z: %w: %s", err, ferr, strings.TrimSpace(string(out)))
	}
	return nil
}

// prepareMountpoint returns the absolute, symlink-free path of mountpoint
// once it is fit to mount on: a stale mount there is recovered; a missing
// path (wraps fs.ErrNotExist), a non-directory (wraps ENOTDIR) or a live
// mount point (wraps EBUSY) is an error.
func prepareMountpoint(mountpoint string, log *slog.Logger) (string, error) {
	if mountpoint == "" {
		return "", fmt.Errorf("fs: empty mount point: %w", iofs.ErrNotExist)
	}
	dir, err := filepath.Abs(mountpoint)
	if err != nil {
		return "", fmt.Errorf("fs: mount point %s: %w", mountpoint, err)
	}
	recovered, err := Recover(dir)
	if err != nil {
		return "", err
	}
	if recovered {
		log.Warn("fs: detached a stale mount (a btfs that died?)", "mountpoint", dir)
	}
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, iofs.ErrNotExist):
		return "", fmt.Errorf("fs: mount point %s does not exist (create the directory first): %w", dir, err)
	case err != nil:
		return "", fmt.Errorf("fs: mount point %s: %w", dir, err)
	case !st.IsDir():
		return "", fmt.Errorf("fs: mount point %s is not a directory: %w", dir, syscall.ENOTDIR)
	}
	if dir, err = filepath.EvalSymlinks(dir); err != nil {
		return "", fmt.Errorf("fs: mount point %s: %w", mountpoint, err)
	}
	mounted, err := isMountPoint(dir)
	if err != nil {
		return "", err
	}
	if mounted {
		return "", fmt.Errorf("fs: %s is already a mount point (another btfs?); unmount it first (fusermount3 -u %s): %w",
			dir, dir, syscall.EBUSY)
	}
	return dir, nil
}

// isMountPoint reports whether dir (absolute, symlinks resolved) is the
// mount point of a mount of this process's namespace, by
// /proc/self/mountinfo: comparing device numbers with the parent misses a
// bind mount of the same file system.
func isMountPoint(dir string) (bool, error) {
	_, found, err := mountAt(dir)
	return found, err
}

// mountDevice returns the device number (major:minor, the name of its
// backing device in /sys/class/bdi) of the topmost mount at dir, from
// /proc/self/mountinfo. Unlike stat(dir), it never asks the file system
// mounted there: for our own FUSE mount, a stat would be a request that
// only this process can answer, and a process killed while one of its
// threads waits for such an answer never finishes dying.
func mountDevice(dir string) (major, minor uint32, err error) {
	fields, found, err := mountAt(dir)
	if err != nil {
		return 0, 0, err
	}
	if !found {
		return 0, 0, fmt.Errorf("fs: %s is not a mount point", dir)
	}
	maj, min, ok := strings.Cut(fields[2], ":")
	ma, err1 := strconv.ParseUint(maj, 10, 32)
	mi, err2 := strconv.ParseUint(min, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("fs: mountinfo of %s: bad device %q", dir, fields[2])
	}
	return uint32(ma), uint32(mi), nil
}

// mountAt returns the mountinfo fields of the topmost mount at dir (the
// last one listed: later mounts stack on earlier ones), and whether there
// is one.
func mountAt(dir string) (fields []string, found bool, err error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, false, fmt.Errorf("fs: list mounts: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options ...
		fs := strings.Fields(sc.Text())
		if len(fs) >= 5 && unescapeMountinfo(fs[4]) == dir {
			fields, found = fs, true
		}
	}
	if err := sc.Err(); err != nil {
		return nil, false, fmt.Errorf("fs: list mounts: %w", err)
	}
	return fields, found, nil
}

// unescapeMountinfo undoes the kernel's octal escapes in a mountinfo path
// (\040 for a space, \011, \012, \134).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
