//go:build unix

package turn

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// Measuring the process around an attack, and the STUN the hostile
// catalogue speaks over streams.

// baseline is the process before an attack.
type baseline struct {
	heap       uint64
	goroutines int
}

func takeBaseline() baseline {
	return baseline{heap: heapAfterGC(), goroutines: runtime.NumGoroutine()}
}

func heapAfterGC() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// requireCalm waits (bounded) for goroutines and heap to come back to the
// baseline, then asserts the process is idle: a read loop spinning on a
// wrapped frame shows as a whole core.
func (h *hostile) requireCalm(t *testing.T, base baseline) {
	t.Helper()
	const (
		goroutineSlack = 8
		heapSlack      = 8 << 20
	)
	start := time.Now()
	g := poll(t, 15*time.Second, func() (int, bool) {
		n := runtime.NumGoroutine()
		return n, n <= base.goroutines+goroutineSlack
	})
	cpu := cpuShare(time.Second)
	heap := poll(t, 10*time.Second, func() (uint64, bool) {
		n := heapAfterGC()
		return n, n <= base.heap+heapSlack
	})
	t.Logf("after the attack: goroutines %d -> %d, heap %.1f -> %.1f MiB, CPU %.1f%% of one core over 1 s; calm after %v",
		base.goroutines, g, mib(base.heap), mib(heap), 100*cpu, time.Since(start).Round(10*time.Millisecond))
	if g > base.goroutines+goroutineSlack {
		t.Fatalf("goroutines stayed at %d (baseline %d)", g, base.goroutines)
	}
	if heap > base.heap+heapSlack {
		t.Fatalf("heap stayed at %.1f MiB (baseline %.1f MiB)", mib(heap), mib(base.heap))
	}
	if cpu > 0.20 {
		t.Fatalf("the process used %.0f%% of a core with nothing to do: a read loop is spinning", 100*cpu)
	}
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// poll re-checks cond until it holds or within passes, and returns the
// last value either way.
func poll[T any](t *testing.T, within time.Duration, cond func() (T, bool)) T {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		v, ok := cond()
		if ok || time.Now().After(deadline) {
			return v
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cpuShare is the process's user+system CPU over window, in cores.
func cpuShare(window time.Duration) float64 {
	before, start := cpuTime(), time.Now()
	time.Sleep(window)
	return (cpuTime() - before).Seconds() / time.Since(start).Seconds()
}

// cpuTime is the user+system CPU the process has used so far.
func cpuTime() time.Duration {
	var u syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &u)
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}

// allocateOver makes an authenticated Allocate over a stream connection.
func allocateOver(t *testing.T, c net.Conn, user, password string) {
	t.Helper()
	udpTransport := stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}
	allocType := stun.NewType(stun.MethodAllocate, stun.ClassRequest)
	if _, err := c.Write(stun.MustBuild(stun.TransactionID, allocType, udpTransport).Raw); err != nil {
		t.Fatal(err)
	}
	challenge := readSTUN(t, c)
	var realm stun.Realm
	var nonce stun.Nonce
	if err := realm.GetFrom(challenge); err != nil {
		t.Fatalf("no realm in %v: %v", challenge, err)
	}
	if err := nonce.GetFrom(challenge); err != nil {
		t.Fatalf("no nonce in %v: %v", challenge, err)
	}
	req := stun.MustBuild(stun.TransactionID, allocType, udpTransport, stun.NewUsername(user), realm, nonce,
		stun.NewLongTermIntegrity(user, realm.String(), password), stun.Fingerprint)
	if _, err := c.Write(req.Raw); err != nil {
		t.Fatal(err)
	}
	if res := readSTUN(t, c); res.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("authenticated Allocate answered %v", res)
	}
}

func readSTUN(t *testing.T, c net.Conn) *stun.Message {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	m, err := readSTUNErr(c)
	if err != nil {
		t.Fatalf("reading a STUN message: %v", err)
	}
	return m
}

func readSTUNErr(c net.Conn) (*stun.Message, error) {
	hdr := make([]byte, 20)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[2:4]))
	if _, err := io.ReadFull(c, body); err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	m := &stun.Message{Raw: append(hdr, body...)}
	if err := m.Decode(); err != nil {
		return nil, fmt.Errorf("decoding: %w", err)
	}
	return m, nil
}
