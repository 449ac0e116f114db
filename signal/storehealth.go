package signal

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/duetchat/duet/matcher"
)

// A queue must be answered soon when the store is away, but a burst of
// joins on a busy node may take longer than that and still succeed:
// cutting them at a fixed deadline would answer `unavailable` to healthy
// joins exactly when the node is busiest. So a join waits as long as the
// store keeps answering (other calls completing), and gives up only when
// it has waited answerWithin and the store has been silent for
// storeSilent.
const (
	answerWithin = 1500 * time.Millisecond
	storeSilent  = time.Second
	joinTimeout  = 10 * time.Second // a store that answers, however slowly
)

var errStoreSilent = errors.New("the store has not answered for a while")

// storeHealth is when a store call of this hub last came back, or the
// store last answered anything at all (seen, when the store can say).
type storeHealth struct {
	now    func() time.Time
	seen   func() time.Time
	lastOK atomic.Int64 // unix ns
}

func (s *storeHealth) ok() { s.lastOK.Store(s.now().UnixNano()) }

// silentSince reports whether nothing came back since start or within
// storeSilent.
func (s *storeHealth) silent(start time.Time) bool {
	last := time.Unix(0, s.lastOK.Load())
	if s.seen != nil {
		if seen := s.seen(); seen.After(last) {
			last = seen
		}
	}
	if last.Before(start) {
		last = start
	}
	return s.now().Sub(last) >= storeSilent
}

// join makes one store join. It returns the store's answer, or
// errStoreSilent once the client has waited answerWithin (from by) and
// the store has gone quiet; then late is the store's eventual answer.
func (h *Hub) storeJoin(ctx context.Context, t matcher.Ticket, by time.Time) (err error, late <-chan error) {
	res := make(chan error, 1)
	jctx, cancel := context.WithTimeout(ctx, joinTimeout)
	// Silence counts from when the client asked, not from when this
	// session's earlier store calls let the join start.
	start := by.Add(-answerWithin)
	go func() {
		defer cancel()
		err := h.opt.Queue.Join(jctx, t)
		if err == nil || errors.Is(err, matcher.ErrAlreadyWaiting) {
			h.health.ok()
		}
		res <- err
	}()
	wait := time.NewTimer(max(by.Sub(h.opt.Now()), 0))
	defer wait.Stop()
	for {
		select {
		case err := <-res:
			return err, nil
		case <-wait.C:
			if h.health.silent(start) {
				return errStoreSilent, res
			}
			wait.Reset(100 * time.Millisecond)
		}
	}
}
