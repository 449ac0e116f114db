package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/time/rate"
)

// recorder collects what the users measure once the warm-up is over.
type recorder struct {
	start     time.Time // measuring starts here
	matches   atomic.Int64
	notify    samples
	relayLoc  samples
	relayX    samples
	errMu     sync.Mutex
	errs      map[string]int
	measuring atomic.Bool
}

func (r *recorder) err(code string) {
	r.errMu.Lock()
	r.errs[code]++
	r.errMu.Unlock()
}

func runMatch(ctx context.Context, cfg matchConfig, progress io.Writer) (Result, error) {
	rec := &recorder{errs: map[string]int{}}
	var lim *rate.Limiter
	if cfg.Rate > 0 {
		// Two queues per match; a small burst keeps the pacing smooth.
		lim = rate.NewLimiter(rate.Limit(2*cfg.Rate), max(1, int(cfg.Rate/50)))
	}
	conns := make([]*websocket.Conn, cfg.Users)
	dialer := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	for i := range conns {
		ws, _, err := dialer.DialContext(ctx, cfg.URLs[i%len(cfg.URLs)], nil)
		if err != nil {
			for _, c := range conns[:i] {
				c.Close()
			}
			return Result{}, fmt.Errorf("user %d: dial %s: %w", i, cfg.URLs[i%len(cfg.URLs)], err)
		}
		conns[i] = ws
	}
	fmt.Fprintf(progress, "%d users connected over %d node(s); warming up %v\n", cfg.Users, len(cfg.URLs), cfg.Warmup)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	users := make([]*user, len(conns))
	for i, ws := range conns {
		users[i] = &user{ws: ws, node: i % len(cfg.URLs), mode: cfg.Mode, rec: rec, lim: lim, signal: cfg.Signal && cfg.Mode == "video"}
		wg.Add(1)
		go func() {
			defer wg.Done()
			users[i].loop(runCtx)
		}()
	}
	select {
	case <-time.After(cfg.Warmup):
	case <-ctx.Done():
	}
	rec.start = time.Now()
	rec.measuring.Store(true)
	ticker := time.NewTicker(5 * time.Second)
	end := time.After(cfg.Duration)
wait:
	for {
		select {
		case <-ticker.C:
			el := time.Since(rec.start).Seconds()
			fmt.Fprintf(progress, "  %4.0fs  %d matches (%.0f/s)\n", el, rec.matches.Load(), float64(rec.matches.Load())/el)
		case <-end:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	ticker.Stop()
	rec.measuring.Store(false)

	secs := time.Since(rec.start).Seconds()
	cancel()
	for _, ws := range conns {
		_ = ws.Close() // unblocks the readers
	}
	wg.Wait()
	if os.Getenv("BENCH_DEBUG") != "" {
		states := map[string]int{}
		for _, u := range users {
			states[u.last]++
		}
		fmt.Fprintf(progress, "what each user last read: %v\n", states)
	}
	return Result{
		URLs: cfg.URLs, Users: cfg.Users, Mode: cfg.Mode, TargetRate: cfg.Rate, Seconds: secs,
		Matches: rec.matches.Load(), MatchesPerSec: float64(rec.matches.Load()) / secs,
		Notify: rec.notify.summary(), RelayLocal: rec.relayLoc.summary(), RelayCross: rec.relayX.summary(),
		Errors: rec.errs,
	}, nil
}

// user is one simulated stranger: queue, match, one chat, leave, again.
type user struct {
	last string // the last message type read, for the stuck report
	ws   *websocket.Conn
	node int
	mode string
	rec  *recorder
	lim  *rate.Limiter
	// signal: exchange offer, answer and candidates before the chat.
	signal bool
}

type inMsg struct {
	Type string `json:"type"`
	Room string `json:"room"`
	Role string `json:"role"`
	Text string `json:"text"`
	Code string `json:"code"`
}

func (u *user) send(v map[string]any) error { return u.ws.WriteJSON(v) }

// fakeSDP is the size of a browser's audio+video offer; the node relays
// SDP without reading it.
var fakeSDP = "v=0\r\n" + strings.Repeat("a=bench-line-of-a-typical-sdp-attribute\r\n", 80)

// sendSignals sends an offer or answer and two trickled candidates.
func (u *user) sendSignals(room, kind string) bool {
	if u.send(map[string]any{"type": kind, "room": room, "sdp": fakeSDP}) != nil {
		return false
	}
	for i := range 2 {
		c := map[string]any{"candidate": fmt.Sprintf("candidate:%d 1 udp 2122260223 192.0.2.%d 5%d000 typ host", i, u.node+1, i), "sdpMid": "0", "sdpMLineIndex": 0}
		if u.send(map[string]any{"type": "candidate", "room": room, "candidate": c}) != nil {
			return false
		}
	}
	return true
}

// sendStamp sends the chat that carries its send time, for relay latency.
func (u *user) sendStamp(room string) bool {
	payload := "bench " + strconv.FormatInt(time.Now().UnixNano(), 10) + " " + strconv.Itoa(u.node)
	return u.send(map[string]any{"type": "chat", "room": room, "text": payload}) == nil
}

func (u *user) read() (inMsg, error) {
	u.last = "reading after " + u.last
	var m inMsg
	_, b, err := u.ws.ReadMessage()
	if err != nil {
		return m, err
	}
	err = json.Unmarshal(b, &m)
	u.last = m.Type
	return m, err
}

func (u *user) loop(ctx context.Context) {
	if _, err := u.read(); err != nil { // welcome
		return
	}
	for ctx.Err() == nil {
		if u.lim != nil && u.lim.Wait(ctx) != nil {
			return
		}
		queued := time.Now()
		if u.send(map[string]any{"type": "queue", "mode": u.mode}) != nil {
			return
		}
		if !u.oneMatch(ctx, queued) {
			return
		}
	}
}

// oneMatch runs one queue-to-leave cycle; false when the socket is done.
func (u *user) oneMatch(ctx context.Context, queued time.Time) bool {
	var room string
	for {
		m, err := u.read()
		if err != nil {
			return false
		}
		switch m.Type {
		case "queued":
		case "matched":
			if u.rec.measuring.Load() {
				u.rec.notify.add(time.Since(queued))
				if m.Role == "answerer" {
					u.rec.matches.Add(1)
				}
			}
			room = m.Room
			if !u.signal {
				if m.Role == "offerer" && !u.sendStamp(room) {
					return false
				}
				break
			}
			// Signalling as a browser does it: ready, the offerer's offer
			// and trickled candidates; the chat follows the answer.
			if u.send(map[string]any{"type": "ready", "room": room}) != nil {
				return false
			}
			if m.Role == "offerer" && !u.sendSignals(room, "offer") {
				return false
			}
		case "offer":
			if m.Room == room && !u.sendSignals(room, "answer") {
				return false
			}
		case "answer":
			if m.Room == room && !u.sendStamp(room) {
				return false
			}
		case "chat":
			if f := strings.Fields(m.Text); len(f) == 3 && f[0] == "bench" {
				sent, _ := strconv.ParseInt(f[1], 10, 64)
				from, _ := strconv.Atoi(f[2])
				if u.rec.measuring.Load() {
					d := time.Since(time.Unix(0, sent))
					if from == u.node {
						u.rec.relayLoc.add(d)
					} else {
						u.rec.relayX.add(d)
					}
				}
			}
			if u.send(map[string]any{"type": "leave"}) != nil {
				return false
			}
		case "idle", "peer_left":
			return true
		case "error":
			u.rec.err(m.Code)
			if m.Code == "rate_limited" || m.Code == "unavailable" {
				// Back off, then start over from idle (leave answers idle
				// wherever we were, so no pair waits on a lost chat).
				select {
				case <-ctx.Done():
					return false
				case <-time.After(100 * time.Millisecond):
				}
				room = ""
				if u.send(map[string]any{"type": "leave"}) != nil {
					return false
				}
			}
		}
	}
}
