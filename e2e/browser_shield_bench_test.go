package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestShieldCost measures, it does not judge: what the nudity shield adds
// to a video call in a real headless Chromium (fake cameras, --disable-gpu)
// on this machine. Two pages call each other; the browser's CPU is read
// from /proc over a window with the shield off, then over one with it on
// in one page (blur-on-detect, the real model on the stranger's video),
// and the page's Long Tasks give the longest main-thread stall. Run it
// with SHIELD_BENCH=1 (not DUET_*: the node reads those) (seconds per window: SHIELD_BENCH_SECONDS,
// default 30); the numbers go to the log and to shield-cost.md among the
// test's artifacts.
func TestShieldCost(t *testing.T) {
	if os.Getenv("SHIELD_BENCH") == "" {
		t.Skip("a measurement, not a test: set SHIELD_BENCH=1")
	}
	window := 30 * time.Second
	if s, err := strconv.Atoi(os.Getenv("SHIELD_BENCH_SECONDS")); err == nil && s > 0 {
		window = time.Duration(s) * time.Second
	}
	ctx := browser(t)
	d := startDuet(t)
	a := openPage(t, ctx, "A", "http://"+d.addr+"/?shieldtest")
	b := openPage(t, ctx, "B", "http://"+d.addr+"/")
	evalOn[bool](a, `window.__long = []; new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__long.push(e.duration); })
		.observe({type: "longtask", buffered: true}); true`)
	a.click("#start-video")
	a.waitStatus("Looking for someone…", 15*time.Second)
	b.click("#start-video")
	for _, p := range []*page{a, b} {
		p.waitStatus("Connected", 30*time.Second)
		p.waitMediaFlowing()
	}

	// CPU in % of one core: the whole browser, and its dedicated
	// workers' threads (only A's shield runs one here), which is what the
	// shield adds even when a busy box gives the browser no more CPU.
	// Long Tasks are wall-clock: on a box busy with other work they grow
	// while a thread waits for a core, so the main threads' own CPU time
	// is read too.
	measure := func() (cpu, workers, mains, longest float64) {
		evalOn[bool](a, `window.__long = []; true`)
		c0 := chromiumCPU(t)
		t0 := time.Now()
		time.Sleep(window) // the measuring window itself, not a wait for a condition
		c1 := chromiumCPU(t)
		secs := time.Since(t0).Seconds()
		longest = evalOn[float64](a, `Math.max(0, ...window.__long)`)
		pct := func(a, b float64) float64 { return (b - a) / secs * 100 }
		return pct(c0.total, c1.total), pct(c0.workers, c1.workers), pct(c0.mains, c1.mains), longest
	}
	offCPU, offWorkers, offMains, offLong := measure()

	// Turning it on loads shield.js, starts the worker and the model: the
	// longest main-thread task from the switch to the second frame.
	evalOn[bool](a, `window.__long = []; const s = document.querySelector("#shield-mode"); s.value = "blur-on-detect"; s.dispatchEvent(new Event("change")); true`)
	a.waitTrue(120*time.Second, `window.__duetShieldTest && window.__duetShieldTest.stats.frames >= 2`)
	startLong := evalOn[float64](a, `Math.max(0, ...window.__long)`)
	before := evalOn[float64](a, `window.__duetShieldTest.stats.frames`)
	onCPU, onWorkers, onMains, onLong := measure()
	stats := evalOn[map[string]any](a, `window.__duetShieldTest.stats`)
	frames := evalOn[float64](a, `window.__duetShieldTest.stats.frames`) - before

	load, _ := os.ReadFile("/proc/loadavg")
	out := fmt.Sprintf("| shield | Chromium CPU (%% of one core) | its workers' threads | pages' main threads | longest main-thread task |\n| --- | --- | --- | --- | --- |\n"+
		"| off | %.1f | %.1f | %.1f | %.0f ms |\n| blur-on-detect | %.1f | %.1f | %.1f | %.0f ms |\n\n"+
		"Longest main-thread task while the shield started (module, worker, model): %.0f ms. "+
		"%0.f frames classified in %s; last %.0f ms, slowest %.0f ms, backend %v. %d cores; load average at the end: %s",
		offCPU, offWorkers, offMains, offLong, onCPU, onWorkers, onMains, onLong, startLong, frames, window,
		stats["lastMs"], stats["maxMs"], stats["backend"], numCPU(), strings.TrimSpace(string(load)))
	t.Log("\n" + out)
	if err := os.WriteFile(filepath.Join(t.ArtifactDir(), "shield-cost.md"), []byte(out+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

type cpuTimes struct{ total, workers, mains float64 }

// chromiumCPU is the CPU time, in seconds, of every Chromium process
// this test started (the descendants of this process named chrom*), of
// their dedicated-worker threads and of their pages' main threads.
func chromiumCPU(t *testing.T) cpuTimes {
	t.Helper()
	parent := map[int]int{}
	comm := map[int]string{}
	ticks := map[int]float64{}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // gone meanwhile
		}
		s := string(b)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open {
			continue
		}
		f := strings.Fields(s[close+2:])
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		parent[pid], comm[pid], ticks[pid] = ppid, s[open+1:close], ut+st
	}
	me := os.Getpid()
	var c cpuTimes
	for pid, name := range comm {
		if !strings.HasPrefix(strings.ToLower(name), "chrom") {
			continue
		}
		for p, hops := parent[pid], 0; p != 0 && hops < 64; p, hops = parent[p], hops+1 {
			if p == me {
				c.total += ticks[pid]
				c.workers += threadTicks(pid, "DedicatedWorker")
				c.mains += rendererMainTicks(pid)
				break
			}
		}
	}
	return cpuTimes{c.total / 100, c.workers / 100, c.mains / 100} // USER_HZ
}

// rendererMainTicks is the CPU ticks of a renderer process's main thread
// (the thread whose id is the process's; Chromium leaves its name alone),
// 0 for other processes.
func rendererMainTicks(pid int) float64 {
	cmd, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil || !strings.Contains(string(cmd), "--type=renderer") {
		return 0
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "task", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return ut + st
}

// threadTicks sums the CPU ticks of pid's threads whose name starts with
// prefix, such as Chromium's "DedicatedWorker thread" (cut to 15
// characters by the kernel).
func threadTicks(pid int, prefix string) float64 {
	dir := filepath.Join("/proc", strconv.Itoa(pid), "task")
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var n float64
	for _, task := range tasks {
		b, err := os.ReadFile(filepath.Join(dir, task.Name(), "stat"))
		if err != nil {
			continue
		}
		s := string(b)
		open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || close < open || !strings.HasPrefix(s[open+1:close], prefix) {
			continue
		}
		f := strings.Fields(s[close+2:])
		if len(f) < 13 {
			continue
		}
		ut, _ := strconv.ParseFloat(f[11], 64)
		st, _ := strconv.ParseFloat(f[12], 64)
		n += ut + st
	}
	return n
}

func numCPU() int {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 1
	}
	return max(1, strings.Count(string(b), "\nprocessor")+boolInt(strings.HasPrefix(string(b), "processor")))
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
