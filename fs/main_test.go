package fs

import (
	"fmt"
	"os"
	"testing"

	"btfs/internal/leakcheck"
	"btfs/storagewrapper"
)

// envServe, when set, makes the test binary a mount server instead of a
// test run: it mounts a small fully downloaded torrent at the directory the
// variable names, prints "ready" and serves until it is killed. The stale
// mount tests kill it with SIGKILL, as a crashed btfs would die.
const envServe = "BTFS_FS_TEST_SERVE"

func TestMain(m *testing.M) {
	if dir := os.Getenv(envServe); dir != "" {
		if err := serveForever(dir); err != nil {
			fmt.Fprintln(os.Stderr, "serve:", err)
			os.Exit(1)
		}
		return
	}
	leakcheck.Main(m)
}

// serveForever mounts the multi-file fixture at dir, fully verified, and
// blocks.
func serveForever(dir string) error {
	testHookMounted = nil // a server, like btfs: no request on its own mount
	tmp, err := os.MkdirTemp("", "btfs-fs-serve-")
	if err != nil {
		return err
	}
	fx, err := buildFixture(tmp, "fixture", 5, false, multiSpecs)
	os.RemoveAll(tmp)
	if err != nil {
		return err
	}
	w, err := storagewrapper.New(fx.mi.Info, storagewrapper.NewMemStore(fx.mi.Info), storagewrapper.Config{})
	if err != nil {
		return err
	}
	if err := fx.fill(w); err != nil {
		return err
	}
	if _, err := Mount(dir, fx.mi, w, Options{}); err != nil {
		return err
	}
	fmt.Println("ready")
	select {}
}
