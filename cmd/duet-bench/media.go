package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/duetchat/duet/internal/testtool"
)

// mediaConfig is the media mode: rooms of two pion peers sending synthetic
// audio and video through the node's SFU (run the node with
// sfu.mode: always).
type mediaConfig struct {
	URL       string // ws://host:port/ws
	Rooms     int
	Duration  time.Duration
	VideoKbps int
	AudioKbps int
	PID       int // the duet process, for CPU and memory; 0 = not measured
}

// MediaResult is what one media run measured.
type MediaResult struct {
	Rooms           int     `json:"rooms"`
	Seconds         float64 `json:"seconds"`
	Sent            int64   `json:"packets_sent"`
	Received        int64   `json:"packets_received"`
	Loss            float64 `json:"loss"`       // overall fraction
	WorstRoomLoss   float64 `json:"worst_loss"` // the worst direction of any room
	Forwarded       float64 `json:"packets_forwarded"`
	CPUSeconds      float64 `json:"node_cpu_seconds"`
	CPUPerPacketUS  float64 `json:"node_cpu_us_per_packet"`
	RSSPerRoomBytes float64 `json:"node_rss_per_room_bytes"`
}

func (r MediaResult) table(w io.Writer) {
	fmt.Fprintf(w, "media: %d rooms through the SFU for %.0fs\n", r.Rooms, r.Seconds)
	fmt.Fprintf(w, "  packets         %d sent, %d received, loss %.2f%% (worst direction %.2f%%)\n", r.Sent, r.Received, 100*r.Loss, 100*r.WorstRoomLoss)
	fmt.Fprintf(w, "  node            %.0f packets forwarded, %.2f CPU s, %.1f µs CPU per packet\n", r.Forwarded, r.CPUSeconds, r.CPUPerPacketUS)
	fmt.Fprintf(w, "  memory          %.0f KiB per room\n", r.RSSPerRoomBytes/1024)
}

// mediaSide is one stranger of a media room.
type mediaSide struct {
	ws   *websocket.Conn
	peer *testtool.PionPeer
	room string
	msgs chan map[string]any
}

func dialSide(ctx context.Context, wsURL string, t *quietTB) (*mediaSide, error) {
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, wsURL, nil)
	if err != nil {
		return nil, err
	}
	s := &mediaSide{ws: ws, peer: testtool.NewPionPeer(t), msgs: make(chan map[string]any, 256)}
	go func() {
		defer close(s.msgs)
		for {
			var m map[string]any
			if ws.ReadJSON(&m) != nil {
				return
			}
			s.msgs <- m
		}
	}()
	return s, ws.WriteJSON(map[string]any{"type": "queue", "mode": "video"})
}

func str(m map[string]any, k string) string { v, _ := m[k].(string); return v }

// connect follows the protocol until the SFU leg is connected.
func (s *mediaSide) connect(ctx context.Context) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var m map[string]any
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if s.peer.PC.ConnectionState() == webrtc.PeerConnectionStateConnected {
				return nil
			}
			continue
		case mm, ok := <-s.msgs:
			if !ok {
				return errors.New("socket closed")
			}
			m = mm
		}
		switch str(m, "type") {
		case "matched":
			if str(m, "media") != "sfu" {
				return errors.New("matched without media sfu: run the node with sfu.mode: always")
			}
			s.room = str(m, "room")
			if err := s.ws.WriteJSON(map[string]any{"type": "ready", "room": s.room}); err != nil {
				return err
			}
		case "offer":
			ans := s.peer.Answer(str(m, "sdp"))
			if err := s.ws.WriteJSON(map[string]any{"type": "answer", "room": s.room, "sdp": ans, "leg": "sfu"}); err != nil {
				return err
			}
		case "candidate":
			raw, _ := json.Marshal(m["candidate"])
			var c webrtc.ICECandidateInit
			if string(raw) != "null" && json.Unmarshal(raw, &c) == nil {
				_ = s.peer.PC.AddICECandidate(c)
			}
		case "error":
			return fmt.Errorf("server: %s %s", str(m, "code"), str(m, "message"))
		}
		if s.peer.PC.ConnectionState() == webrtc.PeerConnectionStateConnected {
			return nil
		}
	}
}

// quietTB lets the test peer run outside a test: a failure is recorded
// and ends the goroutine that hit it; the run then reports it.
type quietTB struct {
	testing.TB // nil: only the methods below are called
	mu         sync.Mutex
	err        error
}

func (q *quietTB) Helper() {}

func (q *quietTB) Fatal(args ...any) { q.fail(fmt.Sprint(args...)) }

func (q *quietTB) Fatalf(format string, args ...any) { q.fail(fmt.Sprintf(format, args...)) }

func (q *quietTB) fail(msg string) {
	q.mu.Lock()
	if q.err == nil {
		q.err = errors.New(msg)
	}
	q.mu.Unlock()
	runtime.Goexit()
}

func (q *quietTB) failure() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

func runMedia(ctx context.Context, cfg mediaConfig, progress io.Writer) (MediaResult, error) {
	tb := &quietTB{}
	rss0 := rss(cfg.PID)
	sides := make([]*mediaSide, 0, 2*cfg.Rooms)
	defer func() {
		for _, s := range sides {
			_ = s.ws.Close()
			s.peer.Close()
		}
	}()
	connectCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for i := 0; i < 2*cfg.Rooms; i++ {
		s, err := dialSide(connectCtx, cfg.URL, tb)
		if err != nil {
			return MediaResult{}, fmt.Errorf("stranger %d: %w", i, err)
		}
		sides = append(sides, s)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(sides))
	for _, s := range sides {
		wg.Add(1)
		go func() { defer wg.Done(); errs <- s.connect(connectCtx) }()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return MediaResult{}, fmt.Errorf("connecting: %w", err)
		}
	}
	if err := tb.failure(); err != nil {
		return MediaResult{}, err
	}
	fmt.Fprintf(progress, "%d rooms connected through the SFU; streaming %v\n", cfg.Rooms, cfg.Duration)
	rssRooms := rss(cfg.PID)
	fwd0 := forwarded(cfg.URL)
	cpu0 := cpuSeconds(cfg.PID)
	start := time.Now()
	streamCtx, stop := context.WithTimeout(ctx, cfg.Duration)
	defer stop()
	// Video in ~1,200-byte packets, audio in 20 ms frames.
	vSize, aSize := 1200, max(cfg.AudioKbps*1000/8/50, 20)
	vPPS := max(cfg.VideoKbps*1000/8/vSize, 1)
	for _, s := range sides {
		wg.Add(1)
		go func() { defer wg.Done(); s.peer.Stream(streamCtx, vPPS, vSize, 50, aSize) }()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	cpu := cpuSeconds(cfg.PID) - cpu0
	time.Sleep(500 * time.Millisecond) // let the last packets land before counting
	fwd := forwarded(cfg.URL) - fwd0
	res := MediaResult{Rooms: cfg.Rooms, Seconds: secs, Forwarded: fwd, CPUSeconds: cpu}
	byRoom := map[string][]*mediaSide{}
	for _, s := range sides {
		byRoom[s.room] = append(byRoom[s.room], s)
	}
	for _, pair := range byRoom {
		if len(pair) != 2 {
			continue
		}
		for i, s := range pair {
			other := pair[1-i]
			sent := other.peer.Sent[0].Load() + other.peer.Sent[1].Load()
			got := s.peer.Got[0].Load() + s.peer.Got[1].Load()
			res.Sent += sent
			res.Received += got
			if sent > 0 {
				res.WorstRoomLoss = max(res.WorstRoomLoss, 1-float64(got)/float64(sent))
			}
		}
	}
	if res.Sent > 0 {
		res.Loss = max(0, 1-float64(res.Received)/float64(res.Sent))
	}
	if fwd > 0 && cpu > 0 {
		res.CPUPerPacketUS = cpu * 1e6 / fwd
	}
	if rss0 > 0 && rssRooms > rss0 {
		res.RSSPerRoomBytes = float64(rssRooms-rss0) / float64(cfg.Rooms)
	}
	return res, nil
}

// cpuSeconds is a process's user+system CPU time from /proc (Linux).
func cpuSeconds(pid int) float64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which may hold spaces: ") S ppid ...".
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}

// rss is a process's resident set in bytes.
func rss(pid int) int64 {
	if pid == 0 {
		return 0
	}
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// forwarded reads duet_sfu_forwarded_packets_total (all kinds) from the
// node's /metrics; 0 when the node cannot be read.
func forwarded(wsURL string) float64 {
	u, err := url.Parse(wsURL)
	if err != nil {
		return 0
	}
	sums, err := scrape("http://" + u.Host + "/metrics")
	if err != nil {
		return 0
	}
	return sums["duet_sfu_forwarded_packets_total"]
}
