//go:build unix

package testtool

import (
	"runtime"
	"syscall"
	"testing"
	"time"
)

// Baseline is the test process before an attack on a server running in
// it: its heap after a GC and its goroutines.
type Baseline struct {
	Heap       uint64
	Goroutines int
}

// TakeBaseline measures the process now.
func TakeBaseline() Baseline {
	return Baseline{Heap: HeapAfterGC(), Goroutines: runtime.NumGoroutine()}
}

// HeapAfterGC is the live heap once garbage is collected.
func HeapAfterGC() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// Slack is how far above its baseline a calm process may stay.
type Slack struct {
	Goroutines int
	Heap       uint64
	Within     time.Duration // how long goroutines and heap may take to settle
}

// RequireCalm waits (bounded) for goroutines and heap to come back to
// base, then asserts the process is idle: a read loop spinning on a
// malformed frame shows as a whole core. It logs what it measured.
func RequireCalm(t testing.TB, base Baseline, slack Slack) {
	t.Helper()
	start := time.Now()
	g := Poll(slack.Within, func() (int, bool) {
		n := runtime.NumGoroutine()
		return n, n <= base.Goroutines+slack.Goroutines
	})
	cpu := CPUShare(time.Second)
	heap := Poll(slack.Within, func() (uint64, bool) {
		n := HeapAfterGC()
		return n, n <= base.Heap+slack.Heap
	})
	t.Logf("after the attack: goroutines %d -> %d, heap %.1f -> %.1f MiB, CPU %.1f%% of one core over 1 s; calm after %v",
		base.Goroutines, g, MiB(base.Heap), MiB(heap), 100*cpu, time.Since(start).Round(10*time.Millisecond))
	if g > base.Goroutines+slack.Goroutines {
		t.Fatalf("goroutines stayed at %d (baseline %d)", g, base.Goroutines)
	}
	if heap > base.Heap+slack.Heap {
		t.Fatalf("heap stayed at %.1f MiB (baseline %.1f MiB)", MiB(heap), MiB(base.Heap))
	}
	if cpu > 0.20 {
		t.Fatalf("the process used %.0f%% of a core with nothing to do: a read loop is spinning", 100*cpu)
	}
}

// MiB is b in mebibytes, for logs.
func MiB(b uint64) float64 { return float64(b) / (1 << 20) }

// Poll re-checks cond until it holds or within passes, and returns the
// last value either way.
func Poll[T any](within time.Duration, cond func() (T, bool)) T {
	deadline := time.Now().Add(within)
	for {
		v, ok := cond()
		if ok || time.Now().After(deadline) {
			return v
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// CPUShare is the process's user+system CPU over window, in cores.
func CPUShare(window time.Duration) float64 {
	before, start := CPUTime(), time.Now()
	time.Sleep(window) // the window is what is measured, not a wait for a condition
	return (CPUTime() - before).Seconds() / time.Since(start).Seconds()
}

// CPUTime is the user+system CPU the process has used so far.
func CPUTime() time.Duration {
	var u syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &u)
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}
