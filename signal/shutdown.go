package signal

// The node going away: Shutdown tells the clients, drains the sockets and
// (on a shared store) waits for the sessions to move to another node;
// Closing is what /readyz and new sockets check meanwhile.

import (
	"context"
	"fmt"
	"time"

	"github.com/gorilla/websocket"

	"github.com/duetchat/duet/wire"
)

// Shutdown tells every client the node is going away, closes the sockets
// and waits (bounded by ctx) for their queues to drain.
//
// On a shared store the sessions are not ended: they wait, as after any
// drop, for their clients to resume on another node, and Shutdown waits
// (up to ctx) until every one has moved or its grace ran out, so this
// node is still there to hand over rooms and held frames.
func (h *Hub) Shutdown(ctx context.Context) error {
	// The store calls already decided (leaves, joins) and the hub's own
	// goroutines finish, within ctx.
	defer func() {
		stored := make(chan struct{})
		go func() { h.store.wait(); h.tasks.wait(); close(stored) }()
		select {
		case <-stored:
		case <-ctx.Done():
		}
	}()
	h.mu.Lock()
	h.closing = true
	for _, s := range h.sessions {
		if s.c != nil {
			h.sendErr(s, wire.Errorf(wire.CodeUnavailable, "this node is shutting down; reconnect shortly"), "")
			s.c.Close(websocket.CloseServiceRestart, "service restart")
		}
	}
	h.unlock()
	done := make(chan struct{})
	go func() { h.writers.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return fmt.Errorf("signal: shutdown drain: %w", ctx.Err())
	}
	if !h.opt.Bus.Shared() {
		return nil // nowhere for sessions to move to
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		h.mu.Lock()
		left := len(h.sessions)
		h.unlock()
		if left == 0 {
			return nil
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			return fmt.Errorf("signal: shutdown drain: %d sessions did not move to another node: %w", left, ctx.Err())
		}
	}
}

// Closing reports whether Shutdown has begun.
func (h *Hub) Closing() bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.closing
}
