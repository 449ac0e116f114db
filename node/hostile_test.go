package node

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/duetchat/duet/wire"
)

// TestHostileCatalogue throws the catalogue of hostile input at one node
// over real WebSockets while a well-behaved pair keeps chatting. Every
// input gets its documented answer, the pair loses nothing and keeps
// getting answers during the attack, the node stays healthy, and once the
// attackers are gone no goroutine is left behind.
func TestHostileCatalogue(t *testing.T) {
	cfg := testConfig(t)
	cfg.HTTP.TrustedProxies = []string{"127.0.0.1"} // each attacker its own address
	cfg.Signal.ResumeGrace = 300 * time.Millisecond
	cfg.Signal.PingInterval = 500 * time.Millisecond // a stalled reader is cut within seconds
	cfg.Matcher.AvoidRepeat = 0
	cfg.Limits.SessionsPerIP = 5
	n := startNode(t, cfg)

	// The well-behaved pair, on addresses of their own.
	a, b, room := pair(t, from(t, n.ws, "good-a", "192.0.2.1"), from(t, n.ws, "good-b", "192.0.2.2"), "text")
	pairDone := make(chan pairReport, 1)
	var stop atomic.Bool
	go func() { pairDone <- chatPingPong(a, b, room, &stop) }()

	base := runtime.NumGoroutine()
	var ipN atomic.Int32
	attacker := func(t *testing.T, name string) *client {
		k := ipN.Add(1) // one read, so octets of two attackers never mix
		return from(t, n.ws, name, fmt.Sprintf("10.66.%d.%d", k/250, k%250+1))
	}

	// One frame from an idle socket, one documented answer.
	frames := []struct {
		name, frame, code, ref string
	}{
		{"invalid utf-8", "{\"type\":\"chat\",\"text\":\"\xc3\x28\"}", "bad_json", ""},
		{"truncated json", `{"type":"queue"`, "bad_json", ""},
		{"whitespace only", "   ", "bad_json", ""},
		{"deep nesting", `{"type":"queue","x":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`, "bad_json", ""},
		{"json null", `null`, "bad_request", ""},
		{"json string", `"queue"`, "bad_request", ""},
		{"json number", `12`, "bad_request", ""},
		{"json array", `[{"type":"queue"}]`, "bad_request", ""},
		{"no type", `{"mode":"text"}`, "bad_request", ""},
		{"empty type", `{"type":""}`, "bad_request", ""},
		{"type not a string", `{"type":["queue"]}`, "bad_request", ""},
		{"unknown type", `{"type":"admin"}`, "unknown_type", ""},
		{"huge unknown type", `{"type":"` + strings.Repeat("z", 30000) + `"}`, "unknown_type", ""},
		{"type with control characters", "{\"type\":\"queue\\u0000\"}", "unknown_type", ""},
		{"number out of range", `{"type":"typing","room":"x","on":1e999}`, "bad_request", "typing"},
		{"bad mode", `{"type":"queue","mode":"audio"}`, "bad_request", "queue"},
		{"10k interests", `{"type":"queue","mode":"text","interests":[` + strings.TrimSuffix(strings.Repeat(`"a",`, 10000), ",") + `]}`, "too_large", "queue"},
		{"interest too long", `{"type":"queue","mode":"text","interests":["` + strings.Repeat("x", 41) + `"]}`, "too_large", "queue"},
		{"lang not a tag", `{"type":"queue","mode":"text","lang":"` + strings.Repeat("x", 100) + `"}`, "bad_request", "queue"},
		{"chat while idle", `{"type":"chat","room":"x","text":"hi"}`, "wrong_state", "chat"},
		{"offer while idle", `{"type":"offer","room":"x","sdp":"v=0"}`, "wrong_state", "offer"},
		{"answer while idle", `{"type":"answer","room":"x","sdp":"v=0"}`, "wrong_state", "answer"},
		{"candidate while idle", `{"type":"candidate","room":"x","candidate":null}`, "wrong_state", "candidate"},
		{"ready while idle", `{"type":"ready","room":"x"}`, "wrong_state", "ready"},
		{"cancel while idle", `{"type":"cancel"}`, "wrong_state", "cancel"},
		{"report while idle", `{"type":"report","room":"x","reason":"r"}`, "wrong_state", "report"},
		{"fallback while idle", `{"type":"fallback","room":"x"}`, "wrong_state", "fallback"},
		{"leg not sfu", `{"type":"answer","room":"x","sdp":"v=0","leg":"../../admin"}`, "bad_request", "answer"},
	}
	// Wrong types for every field of every message.
	wrong := map[string][]string{
		"queue":    {`"mode":5`, `"mode":null,"interests":{}`, `"interests":"cats"`, `"interests":[1]`, `"lang":["en"]`},
		"chat":     {`"room":5`, `"text":{"a":1}`},
		"typing":   {`"room":true`, `"on":"yes"`},
		"offer":    {`"room":[]`, `"sdp":5`, `"leg":5`},
		"answer":   {`"sdp":false`},
		"ready":    {`"room":1.5`},
		"report":   {`"reason":5`},
		"fallback": {`"room":{}`, `"reason":[]`},
	}
	for typ, fields := range wrong {
		for _, f := range fields {
			frames = append(frames, struct{ name, frame, code, ref string }{
				"wrong type " + typ + " " + f, `{"type":"` + typ + `",` + f + `}`, "bad_request", typ,
			})
		}
	}
	slices.SortStableFunc(frames, func(x, y struct{ name, frame, code, ref string }) int { return strings.Compare(x.name, y.name) })
	t.Run("frames", func(t *testing.T) {
		for _, f := range frames {
			t.Run(f.name, func(t *testing.T) {
				c := attacker(t, "frames") // fresh budgets for each
				c.sendRaw(websocket.TextMessage, []byte(f.frame))
				c.expectError(f.code, f.ref)
			})
		}
	})
	t.Run("binary frame", func(t *testing.T) {
		c := attacker(t, "binary")
		c.sendRaw(websocket.BinaryMessage, []byte{0, 1, 2})
		c.expectError("bad_request", "")
	})
	t.Run("10 MB frame closes 1009", func(t *testing.T) {
		c := attacker(t, "big")
		// The node cuts the socket at 64 KiB; the rest of our write may
		// fail. Read while writing, as a browser does: a reader that only
		// starts once the 10 MB write gave up may lose the close frame to
		// the reset the node's close of an unread socket sends.
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			_ = c.wc.SendRaw([]byte(`{"type":"chat","text":"` + strings.Repeat("x", 10<<20) + `"}`))
		}()
		code := c.closeCode(10 * time.Second)
		<-wrote
		if code != websocket.CloseMessageTooBig {
			t.Fatalf("close code %d, want 1009", code)
		}
	})
	t.Run("another room's code", func(t *testing.T) {
		x, y, _ := pair(t, attacker(t, "x"), attacker(t, "y"), "text")
		for _, typ := range []string{"chat", "typing", "offer", "answer", "candidate", "ready", "report", "fallback"} {
			x.send(map[string]any{"type": typ, "room": room, "text": "hijack", "sdp": "v=0", "candidate": nil, "on": true})
			x.expectError("not_in_room", typ)
		}
		_ = y
	})
	t.Run("in-room limits", func(t *testing.T) {
		x, y, r := pair(t, attacker(t, "x"), attacker(t, "y"), "video")
		for _, c := range []struct {
			msg  map[string]any
			code string
		}{
			{map[string]any{"type": "chat", "room": r, "text": strings.Repeat("é", 1001)}, "too_large"},
			{map[string]any{"type": "chat", "room": r, "text": " \t "}, "bad_request"},
			{map[string]any{"type": "offer", "room": r, "sdp": strings.Repeat("a", 33000)}, "too_large"},
			{map[string]any{"type": "candidate", "room": r, "candidate": map[string]any{"candidate": strings.Repeat("a", 33000)}}, "too_large"},
			{map[string]any{"type": "candidate", "room": r, "candidate": "not an object"}, "bad_request"},
			{map[string]any{"type": "queue", "mode": "text"}, "wrong_state"},
		} {
			x.send(c.msg)
			x.expectError(c.code, c.msg["type"].(string))
		}
		// Signals for a stranger who never says ready are held, up to a bound.
		for range 300 {
			x.send(map[string]any{"type": "candidate", "room": r, "candidate": map[string]any{"candidate": "candidate:1 1 udp 1 192.0.2.9 9 typ host", "sdpMid": "0"}})
		}
		if m := x.expect("error"); m.str("code") != "too_large" && m.str("code") != "rate_limited" {
			t.Fatalf("300 held signals: %v, want too_large or rate_limited", m)
		}
		// Chat is sanitised: bidi overrides and control characters go.
		y.send(wire.Request{Type: wire.TypeChat, Room: r, Text: ptr("\u202eevil\u0007\u2066 text\u2069\x1b[31m")})
		for {
			m := x.read(5 * time.Second)
			if m.str("type") == "error" {
				continue // the flood's notices
			}
			if m.str("type") != "chat" || m.str("text") != "evil text[31m" {
				t.Fatalf("sanitised chat = %v", m)
			}
			break
		}
	})
	t.Run("floods of each type", func(t *testing.T) {
		for _, typ := range []string{"queue", "next", "cancel", "leave", "ready", "offer", "answer", "candidate", "chat", "typing", "report", "fallback", "nonsense"} {
			t.Run(typ, func(t *testing.T) {
				c := attacker(t, "flood-"+typ)
				frame := []byte(`{"type":"` + typ + `","room":"x","mode":"text","text":"hi","sdp":"v=0","candidate":null,"on":true,"reason":"r"}`)
				for range 400 {
					c.sendRaw(websocket.TextMessage, frame)
				}
				for i := 0; ; i++ {
					m := c.read(5 * time.Second)
					if m.str("type") == "error" && m.str("code") == "rate_limited" {
						break
					}
					if i > 400 {
						t.Fatal("400 frames and no rate_limited")
					}
				}
			})
		}
	})
	t.Run("skip bot", func(t *testing.T) {
		c := attacker(t, "skipper")
		for i := 0; ; i++ {
			c.send(wire.Request{Type: wire.TypeQueue, Mode: wire.ModeText})
			m := c.read(5 * time.Second)
			if m.str("type") == "error" {
				if m.str("code") != "rate_limited" || m.str("ref") != "queue" {
					t.Fatalf("skip %d: %v", i, m)
				}
				break
			}
			if m.str("type") != "queued" {
				t.Fatalf("skip %d: %v", i, m)
			}
			c.send(wire.Request{Type: wire.TypeLeave})
			c.expect("idle")
			if i > 2*cfg.Limits.JoinsPerMinute {
				t.Fatal("no limit on queue joins")
			}
		}
	})
	t.Run("forged resume token", func(t *testing.T) {
		for _, tok := range []string{"forged", strings.Repeat("A", 4000), "%00%ff", a.welcome.str("token") + "x"} {
			c := dialResume(t, n.ws, tok, "10.66.200.1")
			if c.welcome.str("session") == a.welcome.str("session") || c.welcome["resumed"] == true {
				t.Fatalf("token %.20q took over a session", tok)
			}
			c.expectError("bad_request", "resume")
		}
	})
	t.Run("resume of an expired session", func(t *testing.T) {
		x, y, _ := pair(t, attacker(t, "x"), attacker(t, "y"), "text")
		tok, id := x.welcome.str("token"), x.welcome.str("session")
		x.drop()
		y.expect("peer_reconnecting")
		if m := y.expect("peer_left"); m.str("reason") != "disconnected" {
			t.Fatalf("peer_left = %v", m)
		}
		c := dialResume(t, n.ws, tok, "10.66.200.2")
		if c.welcome.str("session") == id {
			t.Fatal("an expired session came back")
		}
		c.expectError("bad_request", "resume")
	})
	t.Run("refused origin", func(t *testing.T) {
		_, resp, err := websocket.DefaultDialer.Dial(n.ws, http.Header{"Origin": {"https://evil.example"}, "X-Forwarded-For": {"10.66.201.1"}})
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("foreign origin: %v", err)
		}
	})
	t.Run("connection flood from one address", func(t *testing.T) {
		hdr := http.Header{"X-Forwarded-For": {"10.66.202.1"}}
		for i := 0; ; i++ {
			ws, resp, err := websocket.DefaultDialer.Dial(n.ws, hdr)
			if err == nil {
				t.Cleanup(func() { ws.Close() })
				if i > cfg.Limits.ConnectBurstPerIP+5 {
					t.Fatal("no limit on connections from one address")
				}
				continue
			}
			if resp == nil || resp.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("connection %d: %v", i, err)
			}
			var body strings.Builder
			buf := make([]byte, 512)
			k, _ := resp.Body.Read(buf)
			body.Write(buf[:k])
			if !strings.Contains(body.String(), `"rate_limited"`) {
				t.Fatalf("429 body %q does not say rate_limited", body.String())
			}
			break
		}
	})
	t.Run("session flood from one address", func(t *testing.T) {
		hdr := http.Header{"X-Forwarded-For": {"10.66.203.1"}}
		var first *client
		for i := range cfg.Limits.SessionsPerIP {
			c := dial(t, n.ws, fmt.Sprint("session", i), hdr)
			if first == nil {
				first = c
			}
		}
		extra := dialRaw(t, n.ws, "one too many", hdr)
		if m := extra.expect("error"); m.str("code") != "rate_limited" {
			t.Fatalf("session past sessions_per_ip: %v", m)
		}
		if code := extra.closeCode(5 * time.Second); code != websocket.CloseTryAgainLater {
			t.Fatalf("close code %d, want 1013", code)
		}
		// A session that ends gives its place back.
		_ = first.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
		first.closeCode(5 * time.Second)
		for attempt := 0; ; attempt++ {
			c := dialRaw(t, n.ws, "after one left", hdr)
			if m := c.read(5 * time.Second); m.str("type") == "welcome" {
				break
			}
			if attempt == 50 {
				t.Fatal("an ended session's place was never given back")
			}
			c.closeCode(5 * time.Second)
		}
	})
	t.Run("stalled reader", func(t *testing.T) {
		// One stranger stops reading; the other keeps talking. Neither
		// the node nor the good pair waits for it.
		x, _, r := pair(t, attacker(t, "talker"), attacker(t, "sleeper"), "text")
		for i := range 40 {
			x.send(wire.Request{Type: wire.TypeTyping, Room: r, On: ptr(i%2 == 0)})
		}
		// The sleeper misses its pongs, is dropped, and its grace runs
		// out: the talker is not left in a dead room.
		x.expect("peer_reconnecting")
		if m := x.expect("peer_left"); m.str("reason") != "disconnected" {
			t.Fatalf("peer_left = %v", m)
		}
		x.send(wire.Request{Type: wire.TypeNext})
		x.expect("queued")
	})
	t.Run("pair kept going", func(t *testing.T) {
		stop.Store(true)
		rep := <-pairDone
		if rep.err != nil {
			t.Fatalf("the good pair: %v", rep.err)
		}
		slices.Sort(rep.rtts)
		t.Logf("good pair during the attack: %d chat round trips, p50 %s, p99 %s, max %s",
			len(rep.rtts), rep.rtts[len(rep.rtts)/2], rep.rtts[len(rep.rtts)*99/100], rep.rtts[len(rep.rtts)-1])
		if len(rep.rtts) < 3 {
			t.Fatalf("only %d round trips during the attack", len(rep.rtts))
		}
		if code, _ := getJSON(t, n.url+"/healthz"); code != 200 {
			t.Fatalf("/healthz = %d after the attack", code)
		}
	})
	t.Run("no goroutine left", func(t *testing.T) {
		// Attackers' sockets close with their subtests; the node's side of
		// each must go too (sessions in their short grace hold none).
		deadline := time.Now().Add(15 * time.Second)
		for runtime.NumGoroutine() > base+2 {
			if time.Now().After(deadline) {
				_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
				t.Fatalf("%d goroutines, %d before the attack", runtime.NumGoroutine(), base)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// dialResume connects with ?resume=token from ip.
func dialResume(t *testing.T, ws, token, ip string) *client {
	t.Helper()
	return dial(t, ws+"?resume="+url.QueryEscape(token), "resumer", http.Header{"X-Forwarded-For": {ip}})
}

type pairReport struct {
	rtts []time.Duration
	err  error
}

// chatPingPong has a and b answer each other's chat until stop, within
// the chat budget; every line must arrive, in order.
func chatPingPong(a, b *client, room string, stop *atomic.Bool) pairReport {
	var rep pairReport
	for i := 0; i < 2000 && !stop.Load(); i++ {
		text := fmt.Sprint("ping ", i)
		start := time.Now()
		if err := a.wc.Chat(room, text); err != nil {
			return pairReport{err: err}
		}
		if err := expectChat(b, text); err != nil {
			return pairReport{err: err}
		}
		if err := b.wc.Chat(room, "pong "+text); err != nil {
			return pairReport{err: err}
		}
		if err := expectChat(a, "pong "+text); err != nil {
			return pairReport{err: err}
		}
		rep.rtts = append(rep.rtts, time.Since(start))
		time.Sleep(250 * time.Millisecond) // two chats a second each, under chat_rate
	}
	return rep
}

func expectChat(c *client, text string) error {
	m, err := readWithin(c, 5*time.Second)
	if err != nil {
		return fmt.Errorf("%s waiting for %q: %w", c.name, text, err)
	}
	if m.str("type") != "chat" || m.str("text") != text {
		return fmt.Errorf("%s got %v, want chat %q", c.name, m, text)
	}
	return nil
}
