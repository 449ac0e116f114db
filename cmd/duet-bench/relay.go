package main

// Mode relay: rooms that stay open and chat, to measure what a node's
// relay does with many rooms at once from outside its process (the hub's
// locks, the socket writers, the node-to-node bus), apart from matching.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/duetchat/duet/wire"
)

type relayConfig struct {
	URLs     []string
	Rooms    int
	Duration time.Duration
	Warmup   time.Duration
	// Rate is chats per second each side sends; 0 runs every room as a
	// ping-pong (one chat in flight per room, each answered at once), so
	// the node's relay rate is what limits the run.
	Rate float64
	PIDs []int // the duet processes, for their CPU; none = not measured
}

func (c relayConfig) validate() error {
	switch {
	case len(c.URLs) == 0 || c.URLs[0] == "":
		return errors.New("-urls: at least one URL")
	case c.Rooms < 1:
		return errors.New("-rooms: at least 1")
	case c.Duration <= 0:
		return errors.New("-duration: must be positive")
	case c.Rate < 0:
		return errors.New("-rate: 0 or more")
	}
	return nil
}

// RelayResult is what one relay run measured.
type RelayResult struct {
	URLs       []string `json:"urls"`
	Rooms      int      `json:"rooms"`
	Rate       float64  `json:"rate_per_side"`
	Seconds    float64  `json:"seconds"`
	Chats      int64    `json:"chats"`
	ChatsPerS  float64  `json:"chats_per_s"`
	RelayLocal Summary  `json:"relay_same_node"`
	RelayCross Summary  `json:"relay_cross_node"`
	// NodeCPU is the nodes' CPU over the measured window, in cores (1.5 =
	// one and a half cores busy), and per relayed chat.
	NodeCPU       float64        `json:"node_cpu_cores"`
	NodeCPUPerMsg float64        `json:"node_cpu_us_per_chat"`
	Errors        map[string]int `json:"errors"`
}

func (r RelayResult) table(w io.Writer) {
	fmt.Fprintf(w, "%d rooms over %d node(s), %.0fs measured", r.Rooms, len(r.URLs), r.Seconds)
	if r.Rate > 0 {
		fmt.Fprintf(w, ", %.0f chats/s each side", r.Rate)
	} else {
		fmt.Fprint(w, ", ping-pong")
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  chats relayed        %d (%.0f/s)\n", r.Chats, r.ChatsPerS)
	fmt.Fprintf(w, "  relay, same node     %s\n", r.RelayLocal)
	fmt.Fprintf(w, "  relay, cross node    %s\n", r.RelayCross)
	if r.NodeCPU > 0 {
		fmt.Fprintf(w, "  node CPU             %.2f cores, %.1f µs per chat\n", r.NodeCPU, r.NodeCPUPerMsg)
	}
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "  errors               %v\n", r.Errors)
	}
}

func runRelayCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("relay", stderr)
	urls := fs.String("urls", "ws://127.0.0.1:8080/ws", "comma-separated WebSocket URLs; stranger i connects to URL i mod n")
	rooms := fs.Int("rooms", 100, "rooms of two strangers, open for the whole run")
	duration := fs.Duration("duration", 10*time.Second, "how long to measure (after warm-up)")
	warmup := fs.Duration("warmup", 2*time.Second, "chatting before measuring starts")
	perSide := fs.Float64("rate", 0, "chats per second each stranger sends; 0 = ping-pong as fast as the node relays")
	pids := fs.String("pids", "", "comma-separated duet process ids, for the nodes' CPU (Linux)")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg := relayConfig{URLs: strings.Split(*urls, ","), Rooms: *rooms, Duration: *duration, Warmup: *warmup, Rate: *perSide}
	for _, p := range strings.Split(*pids, ",") {
		if p == "" {
			continue
		}
		id, err := strconv.Atoi(p)
		if err != nil || id <= 0 {
			fmt.Fprintf(stderr, "duet-bench relay: -pids: %q is not a process id\n", p)
			return 2
		}
		cfg.PIDs = append(cfg.PIDs, id)
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintln(stderr, "duet-bench relay:", err)
		return 2
	}
	return measure(stdout, stderr, *asJSON, func(ctx context.Context) (RelayResult, error) { return runRelay(ctx, cfg, stderr) })
}

// talker is one side of an open room.
type talker struct {
	c        *wire.Client
	node     int
	room     []byte // the room as a JSON string
	offerer  bool
	rec      *recorder
	chats    *atomic.Int64
	sendMu   sync.Mutex // ticker sends and echoes share the socket
	pingPong bool
}

func runRelay(ctx context.Context, cfg relayConfig, progress io.Writer) (RelayResult, error) {
	rec := &recorder{errs: map[string]int{}}
	var chats atomic.Int64
	n := 2 * cfg.Rooms
	ts := make([]*talker, n)
	closeAll := func() {
		for _, t := range ts {
			if t != nil {
				_ = t.c.Close()
			}
		}
	}
	queue, _ := json.Marshal(wire.Request{Type: wire.TypeQueue, Mode: wire.ModeText}) // a Request always encodes
	for i := range ts {
		c, err := wire.Dial(ctx, cfg.URLs[i%len(cfg.URLs)], wire.DialOptions{})
		if err != nil {
			closeAll()
			return RelayResult{}, fmt.Errorf("stranger %d: %w", i, err)
		}
		ts[i] = &talker{c: c, node: i % len(cfg.URLs), rec: rec, chats: &chats, pingPong: cfg.Rate == 0}
	}
	// Open every room before the chatting starts, so the run measures
	// relay and not matching.
	openCtx, cancelOpen := context.WithTimeout(ctx, 30*time.Second)
	defer cancelOpen()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, t := range ts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := t.open(openCtx, queue); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		closeAll()
		return RelayResult{}, fmt.Errorf("opening rooms: %w", err)
	}
	fmt.Fprintf(progress, "%d rooms open over %d node(s); warming up %v\n", cfg.Rooms, len(cfg.URLs), cfg.Warmup)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, t := range ts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.talk(runCtx, cfg.Rate)
		}()
	}
	select {
	case <-time.After(cfg.Warmup):
	case <-ctx.Done():
	}
	nodeCPU := func() (s float64) {
		for _, p := range cfg.PIDs {
			s += cpuSeconds(p)
		}
		return s
	}
	cpu0 := nodeCPU()
	rec.start = time.Now()
	rec.measuring.Store(true)
	select {
	case <-time.After(cfg.Duration):
	case <-ctx.Done():
	}
	rec.measuring.Store(false)
	secs := time.Since(rec.start).Seconds()
	cpu := nodeCPU() - cpu0
	cancel()
	closeAll() // unblocks the readers
	wg.Wait()
	res := RelayResult{
		URLs: cfg.URLs, Rooms: cfg.Rooms, Rate: cfg.Rate, Seconds: secs,
		Chats: chats.Load(), ChatsPerS: float64(chats.Load()) / secs,
		RelayLocal: rec.relayLoc.summary(), RelayCross: rec.relayX.summary(), Errors: rec.errs,
	}
	if len(cfg.PIDs) > 0 && secs > 0 {
		res.NodeCPU = cpu / secs
		if res.Chats > 0 {
			res.NodeCPUPerMsg = cpu / float64(res.Chats) * 1e6
		}
	}
	return res, nil
}

// open queues and waits for a stranger.
func (t *talker) open(ctx context.Context, queue []byte) error {
	if err := t.c.SendRaw(queue); err != nil {
		return err
	}
	for {
		m, err := t.c.Next(ctx)
		if err != nil {
			return err
		}
		switch m.Type {
		case wire.TypeMatched:
			t.room, _ = json.Marshal(m.Room)
			t.offerer = m.Role == wire.RoleOfferer
			return nil
		case wire.TypeError:
			return fmt.Errorf("queue refused: %s %s", m.Code, m.Message)
		}
	}
}

func (t *talker) send() bool {
	text := `"text":"bench ` + strconv.FormatInt(time.Now().UnixNano(), 10) + " " + strconv.Itoa(t.node) + `"`
	t.sendMu.Lock()
	defer t.sendMu.Unlock()
	return t.c.SendRaw(frame(wire.TypeChat, t.room, text)) == nil
}

// talk sends on a ticker (rate > 0) or answers every chat at once
// (ping-pong, started by the offerer), and records each chat's one-way
// time, until ctx ends or the socket does.
func (t *talker) talk(ctx context.Context, rate float64) {
	if rate > 0 {
		go func() {
			tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
					if !t.send() {
						return
					}
				}
			}
		}()
	} else if t.offerer && !t.send() {
		return
	}
	for {
		b, err := t.c.NextFrame(ctx)
		if err != nil {
			return
		}
		m, err := wire.ParseMessage(b)
		if err != nil {
			continue
		}
		switch m.Type {
		case wire.TypeChat:
			f := strings.Fields(m.Text)
			if len(f) != 3 || f[0] != "bench" {
				continue
			}
			sent, _ := strconv.ParseInt(f[1], 10, 64)
			from, _ := strconv.Atoi(f[2])
			if t.rec.measuring.Load() {
				t.chats.Add(1)
				d := time.Since(time.Unix(0, sent))
				if from == t.node {
					t.rec.relayLoc.add(d)
				} else {
					t.rec.relayX.add(d)
				}
			}
			if t.pingPong && !t.send() {
				return
			}
		case wire.TypeError:
			t.rec.err(m.Code)
		case wire.TypePeerLeft, wire.TypeIdle:
			t.rec.err("room ended: " + m.Type)
			return
		}
	}
}
