package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"btfs/fs"
)

// checkMountpoint gives one clear line for a missing, non-directory or
// non-empty mount point (a mount would hide a non-empty directory's files:
// refused unless nonEmpty, as fusermount and johang/btfs refuse it); a
// stale mount left by a killed btfs is recovered.
func checkMountpoint(mp string, nonEmpty bool) error {
	if recovered, err := fs.Recover(mp); err != nil {
		return err
	} else if recovered {
		fmt.Fprintf(os.Stderr, "btfs: recovered a stale mount at %s (a previous btfs died)\n", mp)
	}
	fi, err := os.Stat(mp)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("mount point %s does not exist", mp)
	case err != nil:
		return fmt.Errorf("mount point %s: %w", mp, err)
	case !fi.IsDir():
		return fmt.Errorf("mount point %s is not a directory", mp)
	case nonEmpty:
		return nil
	}
	// A live mount there is fs.Mount's to report ("already a mount
	// point"); listing it could wait (a magnet mount without metadata).
	if root, err := isMountRoot(mp); err != nil || root {
		return nil
	}
	if empty, err := isEmptyDir(mp); err != nil {
		return fmt.Errorf("mount point %s: %w", mp, err)
	} else if !empty {
		return fmt.Errorf("mount point %s is not empty: the mount would hide its files (use an empty directory, or -nonempty)", mp)
	}
	return nil
}

// isMountRoot reports whether path is the root of a mount. statx's
// STATX_ATTR_MOUNT_ROOT comes from the VFS, and AT_STATX_DONT_SYNC lets a
// FUSE mount answer from its cached attributes: the file system mounted
// there is not asked to list anything.
func isMountRoot(path string) (bool, error) {
	var st unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_STATX_DONT_SYNC, unix.STATX_TYPE, &st); err != nil {
		return false, err
	}
	return st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0, nil
}

// isEmptyDir reports whether the directory dir has no entries.
func isEmptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); errors.Is(err, io.EOF) {
		return true, nil
	} else if err != nil {
		return false, err
	}
	return false, nil
}

// mountError is a failed mount with what is wrong, in place of go-fuse's
// "fusermount exited with code 256" (a raw wait status).
type mountError struct {
	why string
	err error
}

func (e *mountError) Error() string { return "cannot mount: " + e.why }
func (e *mountError) Unwrap() error { return e.err }

// explainMountError looks at what a mount needs (fuseFacts) when it fails,
// and names what is missing; an error it cannot explain is returned as is.
func explainMountError(err error, allowOther bool) error {
	// fs's own refusals of the mount point say what is wrong already.
	if errors.Is(err, syscall.EBUSY) || errors.Is(err, syscall.ENOTDIR) || errors.Is(err, os.ErrNotExist) {
		return err
	}
	if why := diagnoseMount(readFuseFacts(), allowOther); why != "" {
		return &mountError{why: why, err: err}
	}
	return err
}

// fuseFacts are what a mount needs from the machine.
type fuseFacts struct {
	// root: the process is root (needs no fusermount3 and no fuse.conf).
	root bool
	// devFuse is the result of opening /dev/fuse for reading and writing
	// (access(2)); devFuseMode its mode, for the message.
	devFuse     error
	devFuseMode string
	// fusermount is the helper's path ("" if none is installed);
	// fusermountSetuid: it is setuid root, as a user's mount needs.
	fusermount       string
	fusermountSetuid bool
	// userAllowOther: /etc/fuse.conf has user_allow_other.
	userAllowOther bool
}

// fuseConf is the fusermount configuration that -allow-other needs.
const fuseConf = "/etc/fuse.conf"

func readFuseFacts() fuseFacts {
	f := fuseFacts{root: os.Geteuid() == 0}
	f.devFuse = unix.Access("/dev/fuse", unix.R_OK|unix.W_OK)
	if fi, err := os.Stat("/dev/fuse"); err == nil {
		f.devFuseMode = fmt.Sprintf("mode %04o", fi.Mode().Perm())
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			f.devFuseMode += fmt.Sprintf(", owner %d:%d", st.Uid, st.Gid)
		}
	}
	for _, name := range []string{"fusermount3", "fusermount"} {
		if p, err := exec.LookPath(name); err == nil {
			f.fusermount = p
			if fi, err := os.Stat(p); err == nil {
				st, ok := fi.Sys().(*syscall.Stat_t)
				f.fusermountSetuid = fi.Mode()&os.ModeSetuid != 0 && ok && st.Uid == 0
			}
			break
		}
	}
	if file, err := os.Open(fuseConf); err == nil {
		f.userAllowOther = hasUserAllowOther(file)
		file.Close()
	}
	return f
}

// hasUserAllowOther reports whether a fuse.conf enables user_allow_other
// (a line of its own; # starts a comment).
func hasUserAllowOther(r io.Reader) bool {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if strings.TrimSpace(line) == "user_allow_other" {
			return true
		}
	}
	return false
}

// diagnoseMount names the first thing that keeps a mount from working
// given f, or "" if it finds nothing.
func diagnoseMount(f fuseFacts, allowOther bool) string {
	switch {
	case errors.Is(f.devFuse, os.ErrNotExist):
		return "/dev/fuse does not exist: load the fuse module (modprobe fuse), or give the container the device (--device /dev/fuse)"
	case f.root:
		return ""
	case f.devFuse != nil:
		return fmt.Sprintf("no permission to use /dev/fuse (%s): ask an administrator to allow it (chmod 0666 /dev/fuse, the usual setting, or add you to its group), or run as root", f.devFuseMode)
	case f.fusermount == "":
		return "fusermount3 is not installed: install fuse3 (apt-get install fuse3)"
	case !f.fusermountSetuid:
		return fmt.Sprintf("%s is not setuid root, which a mount by a user needs (chmod u+s %s as root)", f.fusermount, f.fusermount)
	case allowOther && !f.userAllowOther:
		return "-allow-other needs user_allow_other in " + fuseConf + " (add that line as root), or drop -allow-other"
	}
	return ""
}
