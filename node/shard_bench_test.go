package node

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/wire"
)

// benchRooms is how many rooms (or pairs of sockets) a parallel benchmark
// runs at once, whatever GOMAXPROCS is, so -cpu 1,2 compare like with like.
const benchRooms = 8

// benchConfig is a node whose limits one benchmark address never meets.
func benchConfig(b *testing.B) *configs.Config {
	cfg := testConfig(b)
	l := &cfg.Limits
	l.ConnectionsPerIP, l.SessionsPerIP = 1e6, 1e6
	l.ConnectRatePerIP, l.ConnectBurstPerIP = 1e9, 1e9
	l.MessageRate, l.MessageBurst = 1e9, 1e9
	l.ChatRate, l.ChatBurst = 1e9, 1e9
	l.QueueRate, l.QueueBurst = 1e9, 1e9
	l.JoinsPerMinute, l.IPJoinsPerMinute = 1e9, 1e9
	l.IPMessageRate, l.IPMessageBurst = 1e9, 1e9
	// The same sockets meet again and again: no waiting out avoid-repeat.
	cfg.Matcher.AvoidRepeat = 0
	return cfg
}

// parallelRooms makes RunParallel start benchRooms goroutines.
func parallelRooms(b *testing.B) {
	p := benchRooms / runtime.GOMAXPROCS(0)
	if p < 1 {
		p = 1
	}
	b.SetParallelism(p)
}

// BenchmarkRelayRooms: chat in benchRooms rooms at once, in each one
// stranger writing a line and the other reading it before the next.
// ns/op is per line over all rooms: it falls with a second core only if
// rooms do not wait for each other.
func BenchmarkRelayRooms(b *testing.B) {
	n := startNode(b, benchConfig(b))
	type pair struct {
		a, c *wire.Client
		room string
	}
	pairs := make(chan pair, benchRooms)
	for range benchRooms {
		a, c, room := pairB(b, n.ws)
		pairs <- pair{a, c, room}
	}
	parallelRooms(b)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		p := <-pairs
		ctx := context.Background()
		i := 0
		for pb.Next() {
			i++
			text := fmt.Sprint("m", i)
			if err := p.a.Chat(p.room, text); err != nil {
				b.Error(err)
				return
			}
			if m, err := p.c.Next(ctx); err != nil || m.Text != text {
				b.Errorf("got %+v, %v", m, err)
				return
			}
		}
	})
}

// BenchmarkMatchRooms: benchRooms pairs of sockets at once, each pair
// queueing both, waiting until both are matched (with each other or with
// another pair's), then leaving both. One op is one pair's round, which
// is one match on average; matches/s is the node's matching rate.
func BenchmarkMatchRooms(b *testing.B) {
	n := startNode(b, benchConfig(b))
	ctx := context.Background()
	socks := make(chan [2]*wire.Client, benchRooms)
	for range benchRooms {
		var p [2]*wire.Client
		for i := range p {
			c, err := wire.Dial(ctx, n.ws, wire.DialOptions{})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = c.Close() })
			if _, err := c.Expect(ctx, wire.TypeWelcome); err != nil {
				b.Fatal(err)
			}
			p[i] = c
		}
		socks <- p
	}
	parallelRooms(b)
	start := time.Now()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		p := <-socks
		for pb.Next() {
			for _, step := range []struct {
				send  func(*wire.Client) error
				until string
			}{
				{func(c *wire.Client) error { return c.Queue(wire.ModeText) }, wire.TypeMatched},
				{(*wire.Client).Leave, wire.TypeIdle},
			} {
				for _, c := range p {
					if err := step.send(c); err != nil {
						b.Error(err)
						return
					}
				}
				for _, c := range p {
					if err := readUntil(ctx, c, step.until); err != nil {
						b.Error(err)
						return
					}
				}
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "matches/s")
}

// readUntil reads messages until one of type typ; an error message fails.
func readUntil(ctx context.Context, c *wire.Client, typ string) error {
	for {
		m, err := c.Next(ctx)
		if err != nil {
			return err
		}
		switch m.Type {
		case typ:
			return nil
		case wire.TypeError:
			return fmt.Errorf("waiting for %s: %s", typ, m.Raw)
		}
	}
}
