package signal

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duetchat/duet/matcher"
	"github.com/duetchat/duet/wire"
)

// recordingQueue keeps every ticket it is asked to add.
type recordingQueue struct {
	mu      sync.Mutex
	tickets []matcher.Ticket
}

func (q *recordingQueue) Join(_ context.Context, t matcher.Ticket) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.tickets = append(q.tickets, t)
	return nil
}

func (q *recordingQueue) Leave(context.Context, string) (bool, error) { return true, nil }

func (q *recordingQueue) modes() (out []string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, t := range q.tickets {
		s := t.Mode
		if t.SoleMode {
			s += " sole"
		}
		out = append(out, s)
	}
	return out
}

// TestSoleModeUntilTheModeChanges: a session's joins tell the store it
// has only ever queued in one mode (so a shared store skips the other
// queues) until it queues in another; from then on they never do, even
// back in the first mode, since a ticket of either may be about.
func TestSoleModeUntilTheModeChanges(t *testing.T) {
	q := &recordingQueue{}
	l := testLimits()
	l.QueueRate, l.QueueBurst, l.MessageRate, l.MessageBurst, l.IPMessageRate, l.IPMessageBurst, l.SendQueue = 100, 100, 100, 100, 100, 100, 16
	h, err := NewHub(Options{Queue: q, Limits: l,
		Signal: testSignal()})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := wire.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), wire.DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Expect(ctx, wire.TypeWelcome); err != nil {
		t.Fatal(err)
	}
	steps := []string{matcher.ModeVideo, matcher.ModeVideo, matcher.ModeText, matcher.ModeVideo}
	for i, mode := range steps {
		if err := c.Queue(mode); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Expect(ctx, wire.TypeQueued); err != nil {
			t.Fatalf("step %d (%s): %v", i, mode, err)
		}
		if err := c.Cancel(); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Expect(ctx, wire.TypeIdle); err != nil {
			t.Fatalf("step %d cancel: %v", i, err)
		}
	}
	want := []string{"video sole", "video sole", "text", "video"}
	got := q.modes()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("tickets = %q, want %q", got, want)
	}
	if err := h.Shutdown(ctx); err != nil {
		t.Error(err)
	}
}
