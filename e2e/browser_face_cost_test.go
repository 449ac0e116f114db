package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserFaceCheckCost measures what the face check costs a video
// call in Chromium with a fake camera showing a face: the CPU of the whole
// browser (every process) over a steady window of a call between two of
// its tabs, with the check off and on, and the longest main-thread task
// (Long Tasks API) each page saw from load to the end of the window.
// It reports numbers and asserts none: run it with FACE_CHECK_COST=1
// (FACE_CHECK_COST_WINDOW sets the window, default 30s).
func TestBrowserFaceCheckCost(t *testing.T) {
	if os.Getenv("FACE_CHECK_COST") == "" {
		t.Skip("a measurement, not a test: set FACE_CHECK_COST=1")
	}
	window := 30 * time.Second
	if w, err := time.ParseDuration(os.Getenv("FACE_CHECK_COST_WINDOW")); err == nil {
		window = w
	}
	for _, tc := range []struct {
		name string
		env  []string
	}{
		{"off", nil},
		{"on, re-check every 5s", []string{"DUET_SIGNAL_FACE_CHECK=true", "DUET_SIGNAL_FACE_CHECK_INTERVAL=5s"}},
		{"on, re-check every 1s", []string{"DUET_SIGNAL_FACE_CHECK=true", "DUET_SIGNAL_FACE_CHECK_INTERVAL=1s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			ctx := startBrowser(t, chromedpLoopback(), faceCamera(t, 2), chromedp.UserDataDir(dir))
			d := startDuet(t, tc.env...)
			url := "http://" + d.addr + "/"
			a := openPageWith(t, ctx, "A", url, longTaskProbe)
			b := openPageWith(t, ctx, "B", url, longTaskProbe)
			a.click("#start-video")
			a.waitStatus("Looking for someone…", 90*time.Second)
			b.click("#start-video")
			for _, p := range []*page{a, b} {
				p.waitStatus("Connected", 60*time.Second)
				p.waitMediaFlowing()
			}
			root := browserPID(t, dir)
			for _, p := range []*page{a, b} {
				evalOn[bool](p, `window.__windowStart = performance.now(); true`)
			}
			load0, _ := os.ReadFile("/proc/loadavg")
			t0, c0 := time.Now(), treeCPU(root)
			time.Sleep(window) // the measured window of a call in progress
			t1, c1 := time.Now(), treeCPU(root)
			cpu := 100 * (c1 - c0).Seconds() / t1.Sub(t0).Seconds()
			var longest []string
			for _, p := range []*page{a, b} {
				longest = append(longest, fmt.Sprintf("%s %.0f ms in the window (%d long tasks), %.0f ms from load (%d)", p.name,
					evalOn[float64](p, `window.__windowLongest`), evalOn[int](p, `window.__windowTasks`),
					evalOn[float64](p, `window.__longest`), evalOn[int](p, `window.__longTasks`)))
			}
			face := evalOn[string](a, `JSON.stringify(window.duet.face)`)
			t.Logf("face check %s: browser CPU %.1f%% of one core over %v (loadavg at start %s); longest main-thread task: %s; A's check: %s",
				tc.name, cpu, window, strings.TrimSpace(string(load0)), strings.Join(longest, "; "), face)
		})
	}
}

// longTaskProbe records the longest main-thread task a page has had,
// from its first script on.
// window.__windowLongest is the same from window.__windowStart (a
// performance.now() time) on.
const longTaskProbe = `window.__longest = 0; window.__longTasks = 0; window.__windowLongest = 0; window.__windowTasks = 0; window.__windowStart = Infinity;
new PerformanceObserver((list) => {
	for (const e of list.getEntries()) {
		window.__longTasks++; window.__longest = Math.max(window.__longest, e.duration);
		if (e.startTime >= window.__windowStart) { window.__windowTasks++; window.__windowLongest = Math.max(window.__windowLongest, e.duration); }
	}
}).observe({type: 'longtask', buffered: true});`

// browserPID finds the Chromium whose profile is dir.
func browserPID(t *testing.T, dir string) int {
	t.Helper()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if bytes.Contains(cmd, []byte("--user-data-dir="+dir)) && !bytes.Contains(cmd, []byte("--type=")) {
			return pid
		}
	}
	t.Fatalf("no chromium with profile %s", dir)
	return 0
}

// treeCPU is the user+system CPU time of pid and all its descendants.
func treeCPU(root int) time.Duration {
	procs := allProcs()
	var ticks float64
	for pid, p := range procs {
		if pid == root || descends(procs, pid, root) {
			ticks += p.ticks
		}
	}
	return time.Duration(ticks * float64(time.Second) / userHZ)
}
