package node

import (
	"context"
	"fmt"
	"testing"

	"github.com/duetchat/duet/wire"
)

// BenchmarkRelayInNode: one chat line from one stranger to the other
// through a real node over loopback WebSockets, read by the other side
// before the next is sent: the in-node relay latency as ns/op.
func BenchmarkRelayInNode(b *testing.B) {
	cfg := testConfig(b)
	cfg.Limits.ChatRate, cfg.Limits.ChatBurst = 1e9, 1e9
	cfg.Limits.MessageRate, cfg.Limits.MessageBurst = 1e9, 1e9
	cfg.Limits.IPMessageRate, cfg.Limits.IPMessageBurst = 1e9, 1e9
	n := startNode(b, cfg)
	a, c, room := pairB(b, n.ws)
	b.ReportAllocs()
	ctx := context.Background()
	i := 0
	for b.Loop() {
		i++
		text := fmt.Sprint("m", i)
		if err := a.Chat(room, text); err != nil {
			b.Fatal(err)
		}
		if m, err := c.Next(ctx); err != nil || m.Text != text {
			b.Fatalf("got %+v, %v", m, err)
		}
	}
}

// pairB connects two strangers in a text room.
func pairB(b *testing.B, url string) (a, c *wire.Client, room string) {
	ctx := context.Background()
	dialB := func() *wire.Client {
		c, err := wire.Dial(ctx, url, wire.DialOptions{})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = c.Close() })
		return c
	}
	a, c = dialB(), dialB()
	for _, x := range []*wire.Client{a, c} {
		if err := x.Queue(wire.ModeText); err != nil {
			b.Fatal(err)
		}
	}
	for _, x := range []*wire.Client{a, c} {
		for {
			m, err := x.Next(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if m.Type == wire.TypeMatched {
				room = m.Room
				break
			}
		}
	}
	return a, c, room
}
