// Command duet-bench is duet's load generator: it speaks the real protocol
// over real WebSockets and reports what it measured.
//
//	duet-bench match -urls ws://127.0.0.1:8080/ws -users 1000 -duration 20s
//
// Mode match: every simulated user queues; on each match (video) both send
// ready, the offerer sends an offer and two candidates, the answerer
// answers with two of its own, and then the offerer sends one chat
// carrying its send time (-signal=false: the chat at once); the answerer
// records the relay latency and leaves, and both queue again. Reported: matches per second,
// register-to-notified latency (queue sent to matched received) and relay
// latency, split by whether the two users sat on the same node or not.
// Progress goes to stderr; stdout gets a JSON summary (-json) or a table.
//
// Mode relay: -rooms rooms open at once and chat for the whole run, each
// side at -rate chats a second or, with -rate 0, as a ping-pong with one
// chat in flight per room; reported: chats relayed per second and each
// chat's one-way time, same node and cross node.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"
)

func main() {
	// The generator shares the machine with the node it measures: a lazier
	// GC leaves more CPU to the node (GOGC in the environment still wins).
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "port" || args[0] == "ready" || args[0] == "get" || args[0] == "metrics" || args[0] == "gobench") {
		return helper(args, stdout, stderr)
	}
	if len(args) > 0 && args[0] == "media" {
		return runMediaCmd(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "idle" {
		return runIdleCmd(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "relay" {
		return runRelayCmd(args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "match" {
		fmt.Fprintln(stderr, "usage: duet-bench match|relay|idle|media [flags]  (duet-bench match -h for the flags)")
		return 2
	}
	fs := newFlagSet("match", stderr)
	urls := fs.String("urls", "ws://127.0.0.1:8080/ws", "comma-separated WebSocket URLs; user i connects to URL i mod n")
	users := fs.Int("users", 1000, "simulated users")
	duration := fs.Duration("duration", 20*time.Second, "how long to measure (after warm-up)")
	warmup := fs.Duration("warmup", 3*time.Second, "load before measuring starts")
	rate := fs.Float64("rate", 0, "target matches per second; 0 = as fast as the node answers")
	mode := fs.String("mode", "video", "queue mode: video or text")
	sig := fs.Bool("signal", true, "video mode: exchange ready, offer, answer and candidates before the timed chat")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	cfg := matchConfig{
		URLs: strings.Split(*urls, ","), Users: *users, Duration: *duration,
		Warmup: *warmup, Rate: *rate, Mode: *mode, Signal: *sig,
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintln(stderr, "duet-bench:", err)
		return 2
	}
	return measure(stdout, stderr, *asJSON, func(ctx context.Context) (Result, error) { return runMatch(ctx, cfg, stderr) })
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// signalContext ends on Ctrl-C or SIGTERM, so a run still reports.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}

type matchConfig struct {
	URLs     []string
	Users    int
	Duration time.Duration
	Warmup   time.Duration
	Rate     float64
	Mode     string
	Signal   bool
}

func (c matchConfig) validate() error {
	switch {
	case len(c.URLs) == 0 || c.URLs[0] == "":
		return errors.New("-urls: at least one URL")
	case c.Users < 2 || c.Users%2 != 0:
		return errors.New("-users: an even number, at least 2")
	case c.Duration <= 0:
		return errors.New("-duration: must be positive")
	case c.Rate < 0:
		return errors.New("-rate: 0 or more")
	case c.Mode != "video" && c.Mode != "text":
		return errors.New("-mode: video or text")
	}
	return nil
}

// Result is what one run measured.
type Result struct {
	URLs          []string       `json:"urls"`
	Users         int            `json:"users"`
	Mode          string         `json:"mode"`
	TargetRate    float64        `json:"target_matches_per_s"`
	Seconds       float64        `json:"seconds"`
	Matches       int64          `json:"matches"`
	MatchesPerSec float64        `json:"matches_per_s"`
	Notify        Summary        `json:"register_to_notified"`
	RelayLocal    Summary        `json:"relay_same_node"`
	RelayCross    Summary        `json:"relay_cross_node"`
	Errors        map[string]int `json:"errors"`
}

func (r Result) table(w io.Writer) {
	fmt.Fprintf(w, "users %d over %d node(s), mode %s, %.0fs measured", r.Users, len(r.URLs), r.Mode, r.Seconds)
	if r.TargetRate > 0 {
		fmt.Fprintf(w, ", target %.0f matches/s", r.TargetRate)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  matches              %d (%.0f/s)\n", r.Matches, r.MatchesPerSec)
	fmt.Fprintf(w, "  register→notified    %s\n", r.Notify)
	fmt.Fprintf(w, "  relay, same node     %s\n", r.RelayLocal)
	fmt.Fprintf(w, "  relay, cross node    %s\n", r.RelayCross)
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "  errors               %v\n", r.Errors)
	}
}

func runMediaCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("media", stderr)
	wsURL := fs.String("url", "ws://127.0.0.1:8080/ws", "the node's WebSocket URL (run it with sfu.mode: always)")
	rooms := fs.Int("rooms", 10, "rooms of two strangers")
	duration := fs.Duration("duration", 10*time.Second, "how long every stranger streams")
	video := fs.Int("video-kbps", 1500, "video bitrate each way per stranger")
	audio := fs.Int("audio-kbps", 50, "audio bitrate each way per stranger")
	pid := fs.Int("pid", 0, "the duet process id, for CPU per packet and memory per room (Linux)")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	profile := fs.String("profile", "", "save a CPU profile of the node over the streaming to this file (needs -token)")
	token := fs.String("token", "", "the node's admin token, for -profile")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *rooms < 1 || *duration <= 0 || *video < 1 {
		fmt.Fprintln(stderr, "duet-bench media: -rooms, -duration and -video-kbps must be positive")
		return 2
	}
	cfg := mediaConfig{URL: *wsURL, Rooms: *rooms, Duration: *duration, VideoKbps: *video, AudioKbps: *audio, PID: *pid,
		Profile: *profile, Token: *token}
	return measure(stdout, stderr, *asJSON, func(ctx context.Context) (MediaResult, error) { return runMedia(ctx, cfg, stderr) })
}
