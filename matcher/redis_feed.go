package matcher

// The changes feed: the announcements other nodes' scripts publish keep
// this node's view current and wake its matchers; a gap in their numbers
// wakes the pass to read the whole queue again.

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// armGap makes sure the pass hears of a gap in the view's changes once it
// is gapWait old, when the pass reads the whole queue again (one timer at
// a time: out-of-order changes open and close gaps all the time).
func (r *RedisStore) armGap() {
	if r.gapSet.CompareAndSwap(false, true) {
		r.afterFunc(gapWait, r.gapDue)
	}
}

func (r *RedisStore) gapDue() {
	r.gapSet.Store(false)
	since := r.view.gapSince()
	if since.IsZero() {
		return
	}
	if left := since.Add(gapWait).Sub(r.now()); left > 0 {
		if r.gapSet.CompareAndSwap(false, true) {
			r.afterFunc(left, r.gapDue)
		}
		return
	}
	r.wakeAll()
}

// parseChange reads an announcement: "<seq> <op> <sent ns> <node>\n<body>".
func parseChange(payload string) (seq int64, op byte, sent time.Time, node, body string, ok bool) {
	f := strings.SplitN(payload, " ", 4)
	if len(f) != 4 || len(f[1]) != 1 {
		return 0, 0, time.Time{}, "", "", false
	}
	seq, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || seq <= 0 {
		return 0, 0, time.Time{}, "", "", false
	}
	ns, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return 0, 0, time.Time{}, "", "", false
	}
	node, body, ok = strings.Cut(f[3], "\n")
	if !ok {
		return 0, 0, time.Time{}, "", "", false
	}
	return seq, f[1][0], time.Unix(0, ns), node, body, true
}

// receive applies one announcement to the view.
func (r *RedisStore) receive(payload string) {
	seq, op, sent, node, body, ok := parseChange(payload)
	if !ok {
		return
	}
	if node != r.node {
		r.lag(r.now().Sub(sent))
	}
	if !r.view.accepting() {
		return // this node does not pair: nothing to keep
	}
	c := change{seq: seq, op: op}
	switch op {
	case opAdd:
		t, err := decodeTicket(node + "\n" + body)
		if err != nil {
			return // the number never comes: a gap, then a full read
		}
		c.t = t
	case opRemove:
		c.ids = []string{body}
	default:
		return
	}
	if self, others := r.view.change(c, r.now()); self || others {
		r.wakeAll()
	}
}

// wakeAll wakes every matcher on this store (coalesced).
func (r *RedisStore) wakeAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for ch := range r.wakers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Wakes implements Waker: it subscribes to the announcements, which keep
// the view current and wake the pass on a join from another node. The
// subscription reconnects by itself (go-redis resubscribes after a lost
// connection); what was announced meanwhile is lost, so a resubscription
// rebuilds the view. Wake-ups are coalesced.
func (r *RedisStore) Wakes(ctx context.Context) <-chan struct{} {
	out := make(chan struct{}, 1)
	r.mu.Lock()
	r.wakers[out] = struct{}{}
	r.mu.Unlock()
	subCtx, cancel := context.WithTimeout(ctx, subscribeTimeout)
	sub := r.rdb.Subscribe(subCtx, r.key("changes"))
	cancel() // bounds the first round trip; go-redis reconnects on its own
	go func() {
		confirmed := false
		defer func() {
			_ = sub.Close()
			r.mu.Lock()
			delete(r.wakers, out)
			if confirmed {
				r.feeds--
			}
			none := r.feeds == 0
			if none {
				// Without announcements this node cannot keep a view, so
				// it must announce its own changes again.
				r.holder = false
			}
			r.mu.Unlock()
			if none {
				r.view.off()
			}
		}()
		msgs := sub.ChannelWithSubscriptions(redis.WithChannelSize(1024))
		for {
			select {
			case <-ctx.Done():
				return
			case msg, ok := <-msgs:
				if !ok {
					return
				}
				switch m := msg.(type) {
				case *redis.Subscription:
					if m.Kind != "subscribe" {
						continue
					}
					if !confirmed {
						confirmed = true
						r.mu.Lock()
						r.feeds++
						r.mu.Unlock()
					} else {
						r.view.invalidate() // announcements were lost while it was away
					}
					r.wakeAll()
				case *redis.Message:
					r.receive(m.Payload)
				}
			}
		}
	}()
	return out
}
