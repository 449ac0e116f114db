package node

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/gorilla/websocket"
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
	i := 0
	for b.Loop() {
		i++
		text := fmt.Sprint("m", i)
		if err := a.WriteJSON(map[string]any{"type": "chat", "room": room, "text": text}); err != nil {
			b.Fatal(err)
		}
		var m struct{ Type, Text string }
		if err := c.ReadJSON(&m); err != nil || m.Text != text {
			b.Fatalf("got %+v, %v", m, err)
		}
	}
}

// pairB connects two strangers in a text room.
func pairB(b *testing.B, url string) (a, c *websocket.Conn, room string) {
	dialB := func() *websocket.Conn {
		ws, _, err := websocket.DefaultDialer.Dial(url, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { ws.Close() })
		return ws
	}
	a, c = dialB(), dialB()
	for _, ws := range []*websocket.Conn{a, c} {
		if err := ws.WriteJSON(map[string]any{"type": "queue", "mode": "text"}); err != nil {
			b.Fatal(err)
		}
	}
	for _, ws := range []*websocket.Conn{a, c} {
		for {
			var m map[string]any
			if _, raw, err := ws.ReadMessage(); err != nil || json.Unmarshal(raw, &m) != nil {
				b.Fatal(err)
			}
			if m["type"] == "matched" {
				room, _ = m["room"].(string)
				break
			}
		}
	}
	return a, c, room
}
