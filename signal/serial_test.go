package signal

import (
	"sync/atomic"
	"testing"
	"time"
)

// A session's calls run in order; different sessions' run at once; and
// a goroutine may start while another waits for the group (a session
// ending during Shutdown), which a WaitGroup does not allow.
func TestSerial(t *testing.T) {
	s := newSerial()
	var order []int
	release := make(chan struct{})
	var other atomic.Bool
	for i := range 5 {
		s.do("a", func() {
			if i == 0 {
				<-release // a's first call blocks...
			}
			order = append(order, i) // only a's goroutine touches order
		})
	}
	s.do("b", func() { other.Store(true) }) // ...while b's runs
	deadline := time.Now().Add(5 * time.Second)
	for !other.Load() {
		if time.Now().After(deadline) {
			t.Fatal("session b waited behind session a")
		}
		time.Sleep(time.Millisecond)
	}
	waited := make(chan struct{})
	go func() { s.wait(); close(waited) }()
	s.do("c", func() {}) // started while wait is waiting
	close(release)
	select {
	case <-waited:
	case <-time.After(5 * time.Second):
		t.Fatal("wait did not return")
	}
	for i, v := range order {
		if v != i {
			t.Fatalf("session a's calls ran as %v, want in order", order)
		}
	}
	if len(order) != 5 {
		t.Fatalf("%d of session a's calls ran", len(order))
	}
}
