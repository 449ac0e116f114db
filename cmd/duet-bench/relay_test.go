package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/internal/testtool"
)

// TestRelayRun: the relay mode keeps rooms open and measures every chat,
// as a ping-pong and at a fixed rate, on one node and across two on Redis.
func TestRelayRun(t *testing.T) {
	tests := []struct {
		name  string
		nodes int
		rate  float64
	}{
		{"memory ping-pong", 1, 0},
		{"memory fixed rate", 1, 20},
		{"redis two nodes ping-pong", 2, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A ping-pong sends as fast as the node answers: lift the
			// per-session message budget as the bench script does.
			relayConfigFor := func() *configs.Config {
				cfg := benchConfig(t)
				cfg.Limits.MessageRate, cfg.Limits.MessageBurst = 1e6, 1e6
				cfg.Limits.IPMessageRate, cfg.Limits.IPMessageBurst = 1e7, 1e7
				cfg.Limits.ChatRate, cfg.Limits.ChatBurst = 1e6, 1e6
				return cfg
			}
			var urls []string
			if tt.nodes == 1 {
				urls = []string{serve(t, relayConfigFor())}
			} else {
				addr := testtool.StartRedis(t)
				for i := range tt.nodes {
					cfg := relayConfigFor()
					cfg.Store.Backend, cfg.Store.Redis.Addrs, cfg.Store.Redis.Node = "redis", []string{addr}, "r"+strconv.Itoa(i)
					urls = append(urls, serve(t, cfg))
				}
			}
			cfg := relayConfig{URLs: urls, Rooms: 8, Duration: time.Second, Warmup: 200 * time.Millisecond, Rate: tt.rate,
				PIDs: []int{os.Getpid()}}
			res, err := runRelay(context.Background(), cfg, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Errors) > 0 {
				t.Fatalf("errors: %v", res.Errors)
			}
			if int64(res.RelayLocal.N+res.RelayCross.N) != res.Chats || res.Chats == 0 {
				t.Fatalf("chats %d, samples %d + %d", res.Chats, res.RelayLocal.N, res.RelayCross.N)
			}
			if tt.nodes == 1 && res.RelayCross.N != 0 {
				t.Fatalf("one node but %d cross-node chats", res.RelayCross.N)
			}
			if tt.rate > 0 {
				// 16 strangers at 20 a second for about a second: the
				// ticker's count, give or take a tick and a late start.
				if want := 16 * tt.rate * res.Seconds; float64(res.Chats) > want*1.2 || float64(res.Chats) < want*0.5 {
					t.Fatalf("%d chats at %v a side, want about %.0f", res.Chats, tt.rate, want)
				}
			}
			if res.NodeCPU <= 0 {
				t.Fatalf("no CPU measured: %+v", res)
			}
		})
	}
}

func TestRelayFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"relay", "-rooms", "0"}, "-rooms"},
		{[]string{"relay", "-rate", "-1"}, "-rate"},
		{[]string{"relay", "-duration", "0s"}, "-duration"},
		{[]string{"relay", "-pids", "12,x"}, "not a process id"},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		if code := run(tt.args, &out, &errb); code != 2 || !strings.Contains(errb.String(), tt.want) {
			t.Errorf("%v: code %d, %q", tt.args, code, errb.String())
		}
	}
}
