package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/duetchat/duet/wire"
)

// mediaConfig is the media mode: rooms of two strangers (litePeer: real
// ICE, DTLS and SRTP, nothing decoded) sending synthetic audio and video
// through the node's SFU (run the node with sfu.mode: always).
type mediaConfig struct {
	URL       string // ws://host:port/ws
	Rooms     int
	Duration  time.Duration
	VideoKbps int
	AudioKbps int
	PID       int // the duet process, for CPU and memory; 0 = not measured
	// Profile, when set, is where a CPU profile of the node over the
	// streaming goes (its /debug/pprof/profile, with the admin Token).
	Profile, Token string
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
	// RSS per room once the rooms have streamed (send rings filled).
	RSSPerRoomStreamedBytes float64 `json:"node_rss_per_room_streamed_bytes"`
	// The load generator's own CPU while streaming: it sends and receives
	// every forwarded packet, on the same machine.
	GenCPUSeconds     float64 `json:"gen_cpu_seconds"`
	GenCPUPerPacketUS float64 `json:"gen_cpu_us_per_packet"`
	// The whole machine while streaming: the busy share of all its CPUs
	// (node, generator and anything else running), and the share of time
	// some task waited for a CPU (/proc/pressure/cpu): how contended the
	// run was, which moves loss more than anything the node does.
	BoxBusy     float64 `json:"box_cpu_busy"`
	BoxPressure float64 `json:"box_cpu_pressure"`
}

func (r MediaResult) table(w io.Writer) {
	fmt.Fprintf(w, "media: %d rooms through the SFU for %.0fs\n", r.Rooms, r.Seconds)
	fmt.Fprintf(w, "  packets         %d sent, %d received, loss %.2f%% (worst direction %.2f%%)\n", r.Sent, r.Received, 100*r.Loss, 100*r.WorstRoomLoss)
	fmt.Fprintf(w, "  node            %.0f packets forwarded, %.2f CPU s, %.1f µs CPU per packet\n", r.Forwarded, r.CPUSeconds, r.CPUPerPacketUS)
	fmt.Fprintf(w, "  generator       %.2f CPU s, %.1f µs CPU per forwarded packet\n", r.GenCPUSeconds, r.GenCPUPerPacketUS)
	fmt.Fprintf(w, "  memory          %.0f KiB per room connected, %.0f KiB once streamed\n", r.RSSPerRoomBytes/1024, r.RSSPerRoomStreamedBytes/1024)
	fmt.Fprintf(w, "  machine         %.0f%% of its CPUs busy, some task waiting for a CPU %.0f%% of the time\n", 100*r.BoxBusy, 100*r.BoxPressure)
}

// mediaSide is one stranger of a media room.
type mediaSide struct {
	c    *wire.Client
	peer *litePeer
	room string
	msgs chan *wire.Message
}

func dialSide(ctx context.Context, wsURL string) (*mediaSide, error) {
	c, err := wire.Dial(ctx, wsURL, wire.DialOptions{})
	if err != nil {
		return nil, err
	}
	s := &mediaSide{c: c, peer: newLitePeer(), msgs: make(chan *wire.Message, 256)}
	go func() {
		defer close(s.msgs)
		for {
			m, err := c.Next(context.Background())
			if err != nil {
				return
			}
			s.msgs <- m
		}
	}()
	return s, c.Queue(wire.ModeVideo)
}

// connect follows the protocol until the SFU leg carries SRTP.
func (s *mediaSide) connect(ctx context.Context) error {
	for {
		var m *wire.Message
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.peer.ready:
			return s.peer.failure()
		case mm, ok := <-s.msgs:
			if !ok {
				return errors.New("socket closed")
			}
			m = mm
		}
		switch m.Type {
		case wire.TypeMatched:
			if m.Media != wire.MediaSFU {
				return errors.New("matched without media sfu: run the node with sfu.mode: always")
			}
			s.room = m.Room
			if err := s.c.Ready(s.room); err != nil {
				return err
			}
		case wire.TypeOffer:
			ans, err := s.peer.answer(m.SDP)
			if err != nil {
				return err
			}
			if err := s.c.Answer(s.room, ans, wire.LegSFU); err != nil {
				return err
			}
		case wire.TypeCandidate:
			if m.Candidate != nil {
				s.peer.candidate(m.Candidate.Candidate)
			}
		case wire.TypeError:
			return fmt.Errorf("server: %s %s", m.Code, m.Message)
		}
	}
}

func runMedia(ctx context.Context, cfg mediaConfig, progress io.Writer) (MediaResult, error) {
	rss0 := rss(cfg.PID)
	sides := make([]*mediaSide, 0, 2*cfg.Rooms)
	defer func() {
		for _, s := range sides {
			_ = s.c.Close()
			s.peer.close()
		}
	}()
	connectCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for i := 0; i < 2*cfg.Rooms; i++ {
		s, err := dialSide(connectCtx, cfg.URL)
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
	fmt.Fprintf(progress, "%d rooms connected through the SFU; streaming %v\n", cfg.Rooms, cfg.Duration)
	rssRooms := rss(cfg.PID)
	fwd0 := forwarded(cfg.URL)
	cpu0 := cpuSeconds(cfg.PID)
	start := time.Now()
	streamCtx, stop := context.WithTimeout(ctx, cfg.Duration)
	defer stop()
	gen0 := ownCPUSeconds()
	busy0, pressure0 := boxCPU()
	// Video in ~1,200-byte packets, audio in 20 ms frames.
	vSize, aSize := 1200, max(cfg.AudioKbps*1000/8/50, 20)
	vPPS := max(cfg.VideoKbps*1000/8/vSize, 1)
	peers := make([]*litePeer, len(sides))
	for i, s := range sides {
		peers[i] = s.peer
	}
	recvCtx, stopRecv := context.WithCancel(ctx)
	defer stopRecv()
	received, err := receive(recvCtx, connected(peers))
	if err != nil {
		return MediaResult{}, fmt.Errorf("receivers: %w", err)
	}
	profiled := make(chan error, 1)
	go func() { profiled <- profileNode(streamCtx, cfg) }()
	stream(streamCtx, peers, [2]int{50, vPPS}, [2]int{aSize, vSize})
	secs := time.Since(start).Seconds()
	cpu := cpuSeconds(cfg.PID) - cpu0
	gen := ownCPUSeconds() - gen0
	busy1, pressure1 := boxCPU()
	rssStreamed := rss(cfg.PID)
	time.Sleep(500 * time.Millisecond) // let the last packets land before counting
	stopRecv()
	received()
	if err := <-profiled; err != nil {
		fmt.Fprintf(progress, "node profile: %v\n", err)
	}
	fwd := forwarded(cfg.URL) - fwd0
	res := MediaResult{Rooms: cfg.Rooms, Seconds: secs, Forwarded: fwd, CPUSeconds: cpu, GenCPUSeconds: gen,
		BoxBusy: (busy1 - busy0) / secs / float64(runtime.NumCPU()), BoxPressure: (pressure1 - pressure0) / secs}
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
	if fwd > 0 {
		res.GenCPUPerPacketUS = gen * 1e6 / fwd
	}
	if rss0 > 0 && rssRooms > rss0 {
		res.RSSPerRoomBytes = float64(rssRooms-rss0) / float64(cfg.Rooms)
	}
	if rss0 > 0 && rssStreamed > rss0 {
		res.RSSPerRoomStreamedBytes = float64(rssStreamed-rss0) / float64(cfg.Rooms)
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

// profileNode saves a CPU profile of the node over the streaming but
// its first and last second (connections settling, streams ending).
func profileNode(ctx context.Context, cfg mediaConfig) error {
	secs := int(cfg.Duration/time.Second) - 2
	if cfg.Profile == "" || secs < 1 {
		return nil
	}
	select {
	case <-ctx.Done():
		return nil
	case <-time.After(time.Second):
	}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return err
	}
	req, err := http.NewRequest(http.MethodGet, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", u.Host, secs), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+cfg.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d (is the admin token right?)", resp.StatusCode)
	}
	f, err := os.Create(cfg.Profile)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// boxCPU is the machine's busy CPU seconds since boot (all CPUs, from
// /proc/stat) and the seconds some task has waited for a CPU (from
// /proc/pressure/cpu); zeros where they cannot be read.
func boxCPU() (busy, pressure float64) {
	if b, err := os.ReadFile("/proc/stat"); err == nil {
		if line, _, _ := strings.Cut(string(b), "\n"); strings.HasPrefix(line, "cpu ") {
			for i, f := range strings.Fields(line)[1:] {
				v, _ := strconv.ParseFloat(f, 64)
				if i != 3 && i != 4 && i < 8 { // all but idle and iowait; guest time is in user already
					busy += v / 100 // USER_HZ
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/pressure/cpu"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		if i := strings.Index(line, "total="); i >= 0 {
			v, _ := strconv.ParseFloat(strings.TrimSpace(line[i+len("total="):]), 64)
			pressure = v / 1e6
		}
	}
	return busy, pressure
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
