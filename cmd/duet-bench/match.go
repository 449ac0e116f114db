package main

import (
	"bytes"
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

	"golang.org/x/time/rate"

	"github.com/duetchat/duet/wire"
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
	conns := make([]*wire.Client, cfg.Users)
	for i := range conns {
		c, err := wire.Dial(ctx, cfg.URLs[i%len(cfg.URLs)], wire.DialOptions{})
		if err != nil {
			for _, c := range conns[:i] {
				_ = c.Close()
			}
			return Result{}, fmt.Errorf("user %d: %w", i, err)
		}
		conns[i] = c
	}
	fmt.Fprintf(progress, "%d users connected over %d node(s); warming up %v\n", cfg.Users, len(cfg.URLs), cfg.Warmup)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	users := make([]*user, len(conns))
	queue, _ := json.Marshal(wire.Request{Type: wire.TypeQueue, Mode: cfg.Mode}) // a Request always encodes
	for i, c := range conns {
		users[i] = &user{c: c, node: i % len(cfg.URLs), mode: cfg.Mode, rec: rec, lim: lim, signal: cfg.Signal && cfg.Mode == wire.ModeVideo, queueFrame: queue}
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
	for _, c := range conns {
		_ = c.Close() // unblocks the readers
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
	c    *wire.Client
	node int
	mode string
	rec  *recorder
	lim  *rate.Limiter
	// signal: exchange offer, answer and candidates before the chat.
	signal     bool
	queueFrame []byte
}

var leaveFrame = []byte(`{"type":"leave"}`)

// sendRaw writes a frame built by hand: the generator shares the machine
// with the node it measures, so its own frames skip reflection.
func (u *user) sendRaw(b []byte) error { return u.c.SendRaw(b) }

// fakeSDP is the size of a browser's audio+video offer; the node relays
// SDP without reading it. sdpField is the frame's "sdp" member, encoded
// once.
var (
	fakeSDP  = "v=0\r\n" + strings.Repeat("a=bench-line-of-a-typical-sdp-attribute\r\n", 80)
	sdpField = `"sdp":` + jsonString(fakeSDP)
)

func jsonString(s string) string {
	b, _ := json.Marshal(s) // a string always encodes
	return string(b)
}

// frame builds {"type":T,"room":ROOM,<rest>} with rest already JSON.
func frame(typ string, room []byte, rest ...string) []byte {
	n := 32 + len(typ) + len(room)
	for _, r := range rest {
		n += 1 + len(r)
	}
	b := make([]byte, 0, n)
	b = append(b, `{"type":"`...)
	b = append(b, typ...)
	b = append(b, `","room":`...)
	b = append(b, room...)
	for _, r := range rest {
		b = append(b, ',')
		b = append(b, r...)
	}
	return append(b, '}')
}

// sendSignals sends an offer or answer and two trickled candidates.
func (u *user) sendSignals(room []byte, kind string) bool {
	if u.sendRaw(frame(kind, room, sdpField)) != nil {
		return false
	}
	for i := range 2 {
		c := fmt.Sprintf(`"candidate":{"candidate":"candidate:%d 1 udp 2122260223 192.0.2.%d 5%d000 typ host","sdpMid":"0","sdpMLineIndex":0}`, i, u.node+1, i)
		if u.sendRaw(frame(wire.TypeCandidate, room, c)) != nil {
			return false
		}
	}
	return true
}

// sendStamp sends the chat that carries its send time, for relay latency.
func (u *user) sendStamp(room []byte) bool {
	text := `"text":"bench ` + strconv.FormatInt(time.Now().UnixNano(), 10) + " " + strconv.Itoa(u.node) + `"`
	return u.sendRaw(frame(wire.TypeChat, room, text)) == nil
}

func (u *user) read() (*wire.Message, error) {
	u.last = "reading after " + u.last
	b, err := u.c.NextFrame(context.Background()) // Close ends the wait
	if err != nil {
		return nil, err
	}
	if t, room, ok := sdpHead(b); ok {
		// An offer or answer: what the user needs is in front of ~3 KiB
		// of SDP that encoding/json would scan twice.
		u.last = t
		return &wire.Message{Type: t, Room: room}, nil
	}
	m, err := wire.ParseMessage(b)
	if err != nil {
		return nil, err
	}
	u.last = m.Type
	return m, nil
}

// sdpHead reads type and room from the front of a relayed offer or answer
// as the node encodes it (type, then room, then sdp). Any other shape -
// another field order, an escaped room - is left to encoding/json.
func sdpHead(b []byte) (typ, room string, ok bool) {
	for _, t := range []string{wire.TypeOffer, wire.TypeAnswer} {
		head := `{"type":"` + t + `","room":"`
		if len(b) < len(head) || string(b[:len(head)]) != head {
			continue
		}
		rest := b[len(head):]
		end := bytes.IndexByte(rest, '"')
		if end < 0 || bytes.IndexByte(rest[:end], '\\') >= 0 {
			return "", "", false
		}
		return t, string(rest[:end]), true
	}
	return "", "", false
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
		if u.sendRaw(u.queueFrame) != nil {
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
	var roomJSON []byte // room as a JSON string, for the frames we build
	for {
		m, err := u.read()
		if err != nil {
			return false
		}
		switch m.Type {
		case wire.TypeQueued:
		case wire.TypeMatched:
			if u.rec.measuring.Load() {
				u.rec.notify.add(time.Since(queued))
				if m.Role == wire.RoleAnswerer {
					u.rec.matches.Add(1)
				}
			}
			room = m.Room
			roomJSON, _ = json.Marshal(room)
			if !u.signal {
				if m.Role == wire.RoleOfferer && !u.sendStamp(roomJSON) {
					return false
				}
				break
			}
			// Signalling as a browser does it: ready, the offerer's offer
			// and trickled candidates; the chat follows the answer.
			if u.sendRaw(frame(wire.TypeReady, roomJSON)) != nil {
				return false
			}
			if m.Role == wire.RoleOfferer && !u.sendSignals(roomJSON, wire.TypeOffer) {
				return false
			}
		case wire.TypeOffer:
			if m.Room == room && !u.sendSignals(roomJSON, wire.TypeAnswer) {
				return false
			}
		case wire.TypeAnswer:
			if m.Room == room && !u.sendStamp(roomJSON) {
				return false
			}
		case wire.TypeChat:
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
			if u.sendRaw(leaveFrame) != nil {
				return false
			}
		case wire.TypeIdle, wire.TypePeerLeft:
			return true
		case wire.TypeError:
			u.rec.err(m.Code)
			if m.Code == wire.CodeRateLimited || m.Code == wire.CodeUnavailable {
				// Back off, then start over from idle (leave answers idle
				// wherever we were, so no pair waits on a lost chat).
				select {
				case <-ctx.Done():
					return false
				case <-time.After(100 * time.Millisecond):
				}
				room = ""
				if u.sendRaw(leaveFrame) != nil {
					return false
				}
			}
		}
	}
}
