package e2e

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// What the browser cost measurements (browser_face_cost_test.go,
// browser_shield_bench_test.go) read of /proc.

// userHZ is the unit of the CPU ticks in /proc stat files on Linux.
const userHZ = 100

// procStat is one /proc stat file, a process's or one of its threads':
// its command (or thread) name, its parent and its user+system CPU ticks.
type procStat struct {
	comm  string
	ppid  int
	ticks float64
}

// readProcStat reads the stat file at path; false when it is gone or
// not what the kernel writes.
func readProcStat(path string) (procStat, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return procStat{}, false // gone meanwhile
	}
	s := string(b)
	// The name sits in parentheses and may hold spaces and parentheses
	// itself: the numbered fields start after the last ')'. State is
	// field 3, ppid 4, utime 14, stime 15.
	open, close := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || close < open {
		return procStat{}, false
	}
	f := strings.Fields(s[close+1:])
	if len(f) < 13 {
		return procStat{}, false
	}
	ppid, _ := strconv.Atoi(f[1])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return procStat{comm: s[open+1 : close], ppid: ppid, ticks: ut + st}, true
}

// allProcs reads every running process's stat, by pid.
func allProcs() map[int]procStat {
	out := map[int]procStat{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProcStat(filepath.Join("/proc", e.Name(), "stat")); ok {
			out[pid] = p
		}
	}
	return out
}

// descends reports whether pid is a descendant of root in procs.
func descends(procs map[int]procStat, pid, root int) bool {
	for p, hops := procs[pid].ppid, 0; p != 0 && hops < 64; p, hops = procs[p].ppid, hops+1 {
		if p == root {
			return true
		}
	}
	return false
}
