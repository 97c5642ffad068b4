package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"btfs/internal/poll"
	"btfs/internal/swarmtest"
)

// artifactsEnv names the directory where tests write what a person looks
// at afterwards (the status page's screenshot); unset: nothing is written.
const artifactsEnv = "BTFS_ARTIFACTS"

// greenPixelsJS counts the pixels of the first piece map drawn in the
// verified colour: what a person sees fill up.
const greenPixelsJS = `(() => {
  const c = document.querySelector("canvas.map");
  if (!c || !c.width) return -1;
  const col = getComputedStyle(document.documentElement).getPropertyValue("--verified").trim();
  const want = [1, 3, 5].map(i => parseInt(col.slice(i, i + 2), 16));
  // A copy read back on a canvas of the test's own: reading the page's
  // canvas again and again makes Chrome warn (willReadFrequently).
  const o = document.createElement("canvas");
  o.width = c.width; o.height = c.height;
  const g = o.getContext("2d", { willReadFrequently: true });
  g.drawImage(c, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i] === want[0] && d[i + 1] === want[1] && d[i + 2] === want[2]) n++;
  return n;
})()`

// TestStatusPageInBrowser opens the status page of a mount in Debian's
// chromium, headless, while the mount downloads a torrent from an aria2c
// seeder on loopback at a capped rate: the page loads and runs with no
// console error nor exception (the events stream carries the token the
// page was opened with), the piece map's verified pixels grow as the
// download runs, a reader opened through the mount appears with its
// window, and a screenshot is written to $BTFS_ARTIFACTS when set.
func TestStatusPageInBrowser(t *testing.T) {
	swarmtest.Require(t, "chromium")
	chromium, _ := exec.LookPath("chromium")
	const size, pieceLen = 24 << 20, 256 << 10
	s := startSwarm(t, swarmtest.TorrentOptions{Name: "film.mkv", Size: size, PieceLength: pieceLen}, true)
	mp := mountpoint(t)
	p := startBtfs(t, mountArgs(t, "-max-download-rate", "2MB", "-http", "127.0.0.1:0", "-http-token", "tok3n", s.torrentPath, mp)...)
	waitMounted(t, p, mp)
	base := servedAt(t, p)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(t.TempDir()),
		// Chromium puts its singleton socket in $TMPDIR and leaves it
		// behind: keep it in the test's own directory.
		chromedp.Env("TMPDIR="+t.TempDir()),
		chromedp.NoSandbox, // root in a test namespace
		chromedp.DisableGPU,
		chromedp.WindowSize(1200, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(t.Context(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	// Console subscribes at once: nothing the page logs from its first
	// line on is missed. Calls of console.error/warn/assert, uncaught
	// exceptions and the browser's own error and warning log entries (a
	// resource that failed to load, a CSP violation) are problems.
	var (
		mu       sync.Mutex
		problems []string
	)
	msgs := chromedp.Console(bctx)
	var collect sync.WaitGroup
	collect.Go(func() {
		for m, err := range msgs {
			if err != nil {
				return
			}
			switch m.Type {
			case chromedp.ConsoleError, chromedp.ConsoleWarning, chromedp.ConsoleException, "assert":
				mu.Lock()
				problems = append(problems, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line))
				mu.Unlock()
			}
		}
	})
	defer collect.Wait()
	defer cancelBrowser()
	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// evalInt evaluates an expression giving a number.
	evalInt := func(js string) int {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
		defer cancel()
		n, err := chromedp.Run(ctx, chromedp.Evaluate[int](js))
		if err != nil {
			t.Fatalf("evaluate %s: %v", js, err)
		}
		return n
	}
	text := func(sel string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
		defer cancel()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	do("open the status page", chromedp.Navigate(base+"status?token=tok3n"), chromedp.WaitVisible(chromedp.CSS("canvas.map")))
	poll.Until(t, 30*time.Second, "the page renders an event", func() bool {
		return evalInt(`Number(document.body.dataset.updates || 0)`) > 0
	})
	before := evalInt(greenPixelsJS)
	verifiedBefore := evalInt(`Number(document.querySelector("canvas.map").dataset.verified)`)
	pieces := evalInt(`Number(document.querySelector("canvas.map").dataset.pieces)`)
	if pieces != int((size+pieceLen-1)/pieceLen) || verifiedBefore >= pieces {
		t.Fatalf("the page shows %d of %d pieces verified before the download could end (torrent: %d)", verifiedBefore, pieces, s.mi.Info.NumPieces())
	}
	poll.Until(t, 60*time.Second, "the piece map's verified pixels grow", func() bool {
		return evalInt(greenPixelsJS) > before && evalInt(`Number(document.querySelector("canvas.map").dataset.verified)`) > verifiedBefore
	})

	// A reader through the mount, kept open: it shows with its window.
	f, err := os.Open(filepath.Join(mp, "film.mkv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.ReadFull(f, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, 30*time.Second, "the page lists the mount's reader", func() bool {
		tx := text(".torrent")
		return strings.Contains(tx, "fuse") && strings.Contains(tx, "film.mkv")
	})
	t.Logf("reads line: %q", text("#reads"))
	var m string
	poll.Until(t, 10*time.Second, "the page shows the pieces read as verified", func() bool {
		ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
		defer cancel()
		m, _ = chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector("canvas.map").dataset.map`))
		return strings.HasPrefix(m, "1111")
	})
	t.Logf("map %s", m)
	if n := evalInt(`document.querySelectorAll(".bar .win").length`); n == 0 {
		t.Error("the reader has no window drawn")
	}
	ctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	cancel()
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if len(png) < 8 || string(png[1:4]) != "PNG" {
		t.Fatalf("screenshot: %d bytes, not a PNG", len(png))
	}
	if dir := os.Getenv(artifactsEnv); dir != "" {
		out := filepath.Join(dir, "status.png")
		if err := os.WriteFile(out, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d bytes)", out, len(png))
	}
	conn := text("#conn")
	if conn != "live" {
		t.Errorf("the page says %q, not live", conn)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(problems) > 0 {
		t.Errorf("the page logged %d problems:\n%s", len(problems), strings.Join(problems, "\n"))
	}
	t.Logf("verified pixels %d → %d; %s", before, evalInt(greenPixelsJS), strconv.Quote(conn))
}
