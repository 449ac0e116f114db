package signal

import (
	"sync"
	"testing"
)

// TestExclusive: every change runs once, with the hub's lock held for
// writing, before its caller returns, and each caller's changes in the
// order it made them, however many goroutines combine and hand over.
func TestExclusive(t *testing.T) {
	tests := []struct {
		name          string
		callers, each int
	}{
		{"alone", 1, 50},
		{"a few", 4, 200},
		{"a crowd, with hand-overs", 64, 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &Hub{store: newSerial()}
			last := make([]int, tt.callers) // written under h.mu only
			total := 0
			var wg sync.WaitGroup
			errs := make(chan string, tt.callers)
			for c := range tt.callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 1; i <= tt.each; i++ {
						applied := false
						h.exclusive(func() {
							if h.mu.TryRLock() {
								h.mu.RUnlock()
								errs <- "a change ran without the write lock"
							}
							if last[c] != i-1 {
								errs <- "a caller's changes ran out of order"
							}
							last[c] = i
							total++
							applied = true
						})
						if !applied {
							errs <- "exclusive returned before its change ran"
							return
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for e := range errs {
				t.Fatal(e)
			}
			if want := tt.callers * tt.each; total != want {
				t.Fatalf("%d changes ran, want %d", total, want)
			}
			if h.combine.active || len(h.combine.q) > 0 {
				t.Fatalf("combiner left active=%v with %d queued", h.combine.active, len(h.combine.q))
			}
		})
	}
}

// TestExclusiveRunsEffectsAfterTheLock: what a change decides for the
// store runs once the lock is let go, as with a plain unlock.
func TestExclusiveRunsEffectsAfterTheLock(t *testing.T) {
	h := &Hub{store: newSerial()}
	ran := make(chan bool, 1)
	h.exclusive(func() {
		h.effects = append(h.effects, effect{session: "s", f: func() {
			free := h.mu.TryLock()
			if free {
				h.mu.Unlock()
			}
			ran <- free
		}})
	})
	if !<-ran {
		t.Fatal("an effect ran while the hub's lock was held")
	}
}
