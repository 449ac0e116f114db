package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/duetchat/duet/wire"
)

// Mode idle: hold N sessions that only answer pings, as open tabs whose
// users wander off do, and measure what they cost the node. Sockets come
// from many loopback addresses (127.0.0.0/8) so one address's ephemeral
// ports do not run out.

type idleConfig struct {
	URL      string
	Sessions int
	Addrs    int // source addresses, 127.1.0.1 upwards
	Rate     float64
	Hold     time.Duration
	PID      int
}

// IdleResult is what one idle run measured.
type IdleResult struct {
	URL             string  `json:"url"`
	Sessions        int     `json:"sessions"`
	Connected       int     `json:"connected"`
	Failed          int     `json:"failed"`
	Addrs           int     `json:"source_addresses"`
	ConnectSeconds  float64 `json:"connect_seconds"`
	HoldSeconds     float64 `json:"hold_seconds"`
	Dropped         int64   `json:"dropped_while_holding"`
	NodeRSSBefore   int64   `json:"node_rss_before_bytes"`
	NodeRSSAfter    int64   `json:"node_rss_after_bytes"`
	BytesPerSession float64 `json:"node_bytes_per_session"`
	NodeGoroutines  float64 `json:"node_goroutines"`
	NodeHeapInuse   float64 `json:"node_heap_inuse_bytes"`
	Projected50k    float64 `json:"projected_rss_50k_bytes"`
	FirstError      string  `json:"first_error,omitempty"`
}

func (r IdleResult) table(w io.Writer) {
	fmt.Fprintf(w, "idle: %d of %d sessions connected (%d failed) from %d addresses in %.1fs, held %.0fs, %d dropped meanwhile\n",
		r.Connected, r.Sessions, r.Failed, r.Addrs, r.ConnectSeconds, r.HoldSeconds, r.Dropped)
	if r.NodeRSSAfter > 0 {
		fmt.Fprintf(w, "  node RSS        %.1f MiB before, %.1f MiB after\n", float64(r.NodeRSSBefore)/(1<<20), float64(r.NodeRSSAfter)/(1<<20))
		fmt.Fprintf(w, "  per session     %.1f KiB (RSS growth / sessions)\n", r.BytesPerSession/1024)
		fmt.Fprintf(w, "  50,000 sessions %.0f MiB projected\n", r.Projected50k/(1<<20))
	}
	fmt.Fprintf(w, "  node            %.0f goroutines, heap in use %.1f MiB\n", r.NodeGoroutines, r.NodeHeapInuse/(1<<20))
	if r.FirstError != "" {
		fmt.Fprintf(w, "  first error     %s\n", r.FirstError)
	}
}

// sourceAddr is the i-th of n loopback source addresses.
func sourceAddr(i, n int) *net.TCPAddr {
	k := i % n
	return &net.TCPAddr{IP: net.IPv4(127, 1+byte(k/65536), byte(k/256), 1+byte(k%256))}
}

func runIdle(ctx context.Context, cfg idleConfig, progress io.Writer) (IdleResult, error) {
	res := IdleResult{URL: cfg.URL, Sessions: cfg.Sessions, Addrs: cfg.Addrs}
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return res, fmt.Errorf("-url: %w", err)
	}
	metricsURL := "http://" + u.Host + "/metrics"
	runtime.GC()
	res.NodeRSSBefore = rss(cfg.PID)

	lim := rate.NewLimiter(rate.Limit(cfg.Rate), max(1, int(cfg.Rate/10)))
	conns := make([]*wire.Client, cfg.Sessions)
	var dropped atomic.Int64
	var holding atomic.Bool
	var wg sync.WaitGroup
	var errOnce sync.Once
	start := time.Now()
	next := time.Now().Add(5 * time.Second)
	for i := range conns {
		if lim.Wait(ctx) != nil {
			break
		}
		c, err := wire.Dial(ctx, cfg.URL, wire.DialOptions{
			NetDialContext: (&net.Dialer{LocalAddr: sourceAddr(i, cfg.Addrs)}).DialContext,
			BufferSize:     1024,
		})
		if err == nil {
			wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err = c.Expect(wctx, wire.TypeWelcome)
			cancel()
			if err != nil {
				_ = c.Close()
			}
		}
		if err != nil {
			res.Failed++
			errOnce.Do(func() { res.FirstError = fmt.Sprintf("session %d: %v", i, err) })
			continue
		}
		conns[i] = c
		res.Connected++
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Reading answers the node's pings; an idle tab sends nothing.
			for {
				if _, err := c.NextFrame(context.Background()); err != nil {
					if holding.Load() {
						dropped.Add(1)
					}
					return
				}
			}
		}()
		if time.Now().After(next) {
			fmt.Fprintf(progress, "  %d sessions connected (%d failed), node RSS %.0f MiB\n", res.Connected, res.Failed, float64(rss(cfg.PID))/(1<<20))
			next = time.Now().Add(5 * time.Second)
		}
	}
	res.ConnectSeconds = time.Since(start).Seconds()
	fmt.Fprintf(progress, "%d sessions connected in %.1fs; holding %v\n", res.Connected, res.ConnectSeconds, cfg.Hold)
	holding.Store(true)
	held := time.Now()
	select {
	case <-time.After(cfg.Hold):
	case <-ctx.Done():
	}
	res.HoldSeconds = time.Since(held).Seconds()
	res.Dropped = dropped.Load()
	res.NodeRSSAfter = rss(cfg.PID)
	if sums, err := scrape(metricsURL); err == nil {
		res.NodeGoroutines, res.NodeHeapInuse = sums["go_goroutines"], sums["go_memstats_heap_inuse_bytes"]
	}
	if res.Connected > 0 && res.NodeRSSAfter > 0 {
		res.BytesPerSession = float64(res.NodeRSSAfter-res.NodeRSSBefore) / float64(res.Connected)
		res.Projected50k = float64(res.NodeRSSBefore) + 50000*res.BytesPerSession
	}
	holding.Store(false)
	for _, c := range conns {
		if c != nil {
			_ = c.Close()
		}
	}
	wg.Wait()
	return res, nil
}

func runIdleCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("idle", stderr)
	wsURL := fs.String("url", "ws://127.0.0.1:8080/ws", "the node's WebSocket URL")
	sessions := fs.Int("sessions", 10000, "idle sessions to hold")
	addrs := fs.Int("addrs", 0, "source addresses in 127.0.0.0/8 (0 = one per 10,000 sessions, at least 1)")
	connRate := fs.Float64("rate", 2000, "new sessions per second")
	hold := fs.Duration("hold", 30*time.Second, "how long to hold them once all are connected")
	pid := fs.Int("pid", 0, "the duet process id, for its memory (Linux)")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *addrs == 0 {
		*addrs = max(1, (*sessions+9999)/10000)
	}
	if *sessions < 1 || *addrs < 1 || *connRate <= 0 || *hold < 0 {
		fmt.Fprintln(stderr, "duet-bench idle: -sessions, -addrs and -rate must be positive")
		return 2
	}
	cfg := idleConfig{URL: *wsURL, Sessions: *sessions, Addrs: *addrs, Rate: *connRate, Hold: *hold, PID: *pid}
	return measure(stdout, stderr, *asJSON, func(ctx context.Context) (IdleResult, error) { return runIdle(ctx, cfg, stderr) })
}

// measure runs one mode until it ends or Ctrl-C/SIGTERM (so an
// interrupted run still reports), then prints what it measured.
func measure[R interface{ table(io.Writer) }](stdout, stderr io.Writer, asJSON bool, run func(context.Context) (R, error)) int {
	ctx, stop := signalContext()
	defer stop()
	res, err := run(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "duet-bench:", err)
		return 1
	}
	return emit(stdout, res, asJSON, res.table)
}

// emit prints a result as indented JSON or as its table.
func emit(w io.Writer, v any, asJSON bool, table func(io.Writer)) int {
	if !asJSON {
		table(w)
		return 0
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return 1
	}
	return 0
}
