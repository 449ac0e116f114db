package node

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/duetchat/duet/wire"
)

func TestWelcome(t *testing.T) {
	n := startNode(t, testConfig(t))
	a := dial(t, n.ws, "a", nil)
	w := a.welcome
	if w["protocol"] != float64(1) {
		t.Errorf("protocol = %v, want 1", w["protocol"])
	}
	if w.str("session") == "" || len(w.str("token")) < 32 {
		t.Errorf("session %q / token %q too short", w.str("session"), w.str("token"))
	}
	f, ok := w["features"].(map[string]any)
	if !ok {
		t.Fatalf("features missing: %v", w)
	}
	for _, k := range []string{"sfu", "turn", "text"} {
		if _, ok := f[k].(bool); !ok {
			t.Errorf("features.%s not a boolean: %v", k, f)
		}
	}
	if f["text"] != true {
		t.Errorf("features.text = %v, want true", f["text"])
	}
	if w["online"] != float64(1) {
		t.Errorf("online = %v, want 1", w["online"])
	}
	b := dial(t, n.ws, "b", nil)
	if b.welcome["online"] != float64(2) {
		t.Errorf("second online = %v, want 2", b.welcome["online"])
	}
	if b.welcome.str("session") == w.str("session") {
		t.Error("two connections share a session id")
	}
}

var roomCode = regexp.MustCompile(`^[A-Za-z0-9_-]{16,}$`)

func TestMatchedVideo(t *testing.T) {
	n := startNode(t, testConfig(t))
	a, b := dial(t, n.ws, "a", nil), dial(t, n.ws, "b", nil)
	a.send(wire.Request{Type: wire.TypeQueue, Mode: wire.ModeVideo, Interests: []string{"Music", " cats "}})
	if q := a.expect("queued"); q.str("mode") != "video" {
		t.Errorf("queued.mode = %q", q.str("mode"))
	}
	b.send(wire.Request{Type: wire.TypeQueue, Mode: wire.ModeVideo, Interests: []string{"cats"}})
	b.expect("queued")
	for _, c := range []*client{a, b} {
		m := c.expect("matched")
		if !roomCode.MatchString(m.str("room")) {
			t.Errorf("room code %q is not >=16 URL-safe chars", m.str("room"))
		}
		if m.str("mode") != "video" || m.str("media") != "p2p" {
			t.Errorf("matched mode/media: %v", m)
		}
		if ci, _ := m["common_interests"].([]any); len(ci) != 1 || ci[0] != "cats" {
			t.Errorf("common_interests = %v, want [cats]", m["common_interests"])
		}
		if _, ok := m["ice_servers"].([]any); !ok {
			t.Errorf("ice_servers not an array: %v", m["ice_servers"])
		}
		if ms, _ := m["p2p_timeout_ms"].(float64); ms <= 0 {
			t.Errorf("p2p_timeout_ms = %v", m["p2p_timeout_ms"])
		}
	}
}

func TestTextModeAndModeSeparation(t *testing.T) {
	n := startNode(t, testConfig(t))
	v, x := dial(t, n.ws, "video", nil), dial(t, n.ws, "text", nil)
	v.send(wire.Request{Type: wire.TypeQueue, Mode: wire.ModeVideo})
	v.expect("queued")
	x.send(wire.Request{Type: wire.TypeQueue, Mode: wire.ModeText})
	x.expect("queued")
	// Neither is matched: the stats show one waiting in each mode.
	if _, st := getJSON(t, n.url+"/api/stats"); fmt.Sprint(st["waiting"]) != "map[text:1 video:1]" {
		t.Fatalf("stats = %v, want one waiting per mode", st)
	}
	y := dial(t, n.ws, "text2", nil)
	y.send(wire.Request{Type: wire.TypeQueue, Mode: wire.ModeText})
	y.expect("queued")
	mx, my := x.expect("matched"), y.expect("matched")
	off, ans, room := x, y, mx.str("room")
	if my.str("role") == "offerer" {
		off, ans = y, x
	}
	// text rooms: no media signalling at all
	off.send(wire.Request{Type: wire.TypeOffer, Room: room, SDP: "v=0"})
	off.expectError("wrong_state", "offer")
	off.send(wire.Request{Type: wire.TypeChat, Room: room, Text: ptr("hi")})
	if m := ans.expect("chat"); m.str("text") != "hi" {
		t.Fatalf("chat = %v", m)
	}
}

func TestTextMatchedShape(t *testing.T) {
	n := startNode(t, testConfig(t))
	a, b := dial(t, n.ws, "a", nil), dial(t, n.ws, "b", nil)
	a.send(wire.Request{Type: wire.TypeQueue, Mode: wire.ModeText})
	a.expect("queued")
	b.send(wire.Request{Type: wire.TypeQueue, Mode: wire.ModeText})
	b.expect("queued")
	for _, c := range []*client{a, b} {
		m := c.expect("matched")
		ice, ok := m["ice_servers"].([]any)
		if !ok || len(ice) != 0 {
			t.Errorf("text matched ice_servers = %#v, want []", m["ice_servers"])
		}
		if r := m.str("role"); r != "offerer" && r != "answerer" {
			t.Errorf("text matched role = %q", r)
		}
		if _, ok := m["common_interests"].([]any); !ok {
			t.Errorf("common_interests = %#v, want []", m["common_interests"])
		}
	}
}

func TestReadyBuffersSignalsButNotChat(t *testing.T) {
	n := startNode(t, testConfig(t))
	off, ans, room := pair(t, dial(t, n.ws, "a", nil), dial(t, n.ws, "b", nil), "video")
	off.send(wire.Request{Type: wire.TypeReady, Room: room})
	off.send(wire.Request{Type: wire.TypeOffer, Room: room, SDP: "v=0 offer"})
	off.send(map[string]any{"type": "candidate", "room": room,
		"candidate": map[string]any{"candidate": "candidate:1 1 udp 1 192.0.2.1 5000 typ host", "sdpMid": "0", "sdpMLineIndex": 0, "evil": "x"}})
	off.send(map[string]any{"type": "candidate", "room": room, "candidate": nil})
	off.send(wire.Request{Type: wire.TypeChat, Room: room, Text: ptr("first")})
	// The answerer has not sent ready: chat overtakes the buffered signals.
	if m := ans.expect("chat"); m.str("text") != "first" || m.str("room") != room {
		t.Fatalf("chat = %v", m)
	}
	ans.send(wire.Request{Type: wire.TypeReady, Room: room})
	if m := ans.expect("offer"); m.str("sdp") != "v=0 offer" || m.str("room") != room {
		t.Fatalf("offer = %v", m)
	}
	c := ans.expect("candidate")
	cand, _ := c["candidate"].(map[string]any)
	if cand["candidate"] != "candidate:1 1 udp 1 192.0.2.1 5000 typ host" || cand["sdpMid"] != "0" || cand["sdpMLineIndex"] != float64(0) {
		t.Fatalf("candidate = %v", c)
	}
	if _, smuggled := cand["evil"]; smuggled {
		t.Fatalf("unknown candidate field relayed: %v", cand)
	}
	if end := ans.expect("candidate"); end["candidate"] != nil {
		t.Fatalf("end of candidates = %v, want null", end)
	}
	// Once ready, signals flow at once, both ways.
	ans.send(wire.Request{Type: wire.TypeAnswer, Room: room, SDP: "v=0 answer"})
	if m := off.expect("answer"); m.str("sdp") != "v=0 answer" {
		t.Fatalf("answer = %v", m)
	}
}

func TestChatAndTyping(t *testing.T) {
	cfg := testConfig(t)
	cfg.Signal.ChatMaxChars = 10
	n := startNode(t, cfg)
	a, b, room := pair(t, dial(t, n.ws, "a", nil), dial(t, n.ws, "b", nil), "text")
	tests := []struct {
		name, text, want, errCode string
	}{
		{"plain", "hello", "hello", ""},
		{"sanitised", " a\u202eb\x00c ", "abc", ""},
		{"cjk and emoji kept", "你好👋", "你好👋", ""},
		{"empty after trim", " \u202e\t ", "", "bad_request"},
		{"too long", "12345678901", "", "too_large"},
		{"exactly max", "1234567890", "1234567890", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := a.in(t), b.in(t)
			before := time.Now().UnixMilli()
			a.send(wire.Request{Type: wire.TypeChat, Room: room, Text: ptr(tt.text)})
			if tt.errCode != "" {
				a.expectError(tt.errCode, "chat")
				return
			}
			m := b.expect("chat")
			if m.str("text") != tt.want || m.str("room") != room {
				t.Fatalf("chat = %v, want text %q", m, tt.want)
			}
			if at, _ := m["at"].(float64); int64(at) < before-1000 {
				t.Errorf("chat.at = %v", m["at"])
			}
		})
	}
	b.send(wire.Request{Type: wire.TypeTyping, Room: room, On: ptr(true)})
	if m := a.expect("typing"); m["on"] != true || m.str("room") != room {
		t.Fatalf("typing = %v", m)
	}
	b.send(wire.Request{Type: wire.TypeTyping, Room: room, On: ptr(false)})
	if m := a.expect("typing"); m["on"] != false {
		t.Fatalf("typing = %v", m)
	}
}

func TestErrorCodes(t *testing.T) {
	cfg := testConfig(t)
	cfg.Signal.MaxMessageBytes = 4096
	n := startNode(t, cfg)
	a := dial(t, n.ws, "a", nil)
	tests := []struct {
		name  string
		frame string
		code  string
		ref   string
	}{
		{"invalid json", `{"type":`, "bad_json", ""},
		{"invalid utf8", "{\"type\":\"chat\",\"text\":\"\xff\"}", "bad_json", ""},
		{"not an object", `[1,2]`, "bad_request", ""},
		{"no type", `{"mode":"video"}`, "bad_request", ""},
		{"type not a string", `{"type":5}`, "bad_request", ""},
		{"mode wrong type", `{"type":"queue","mode":5}`, "bad_request", "queue"},
		{"interests wrong type", `{"type":"queue","mode":"video","interests":"cats"}`, "bad_request", "queue"},
		{"bad mode", `{"type":"queue","mode":"audio"}`, "bad_request", "queue"},
		{"too many interests", `{"type":"queue","mode":"video","interests":["1","2","3","4","5","6","7","8","9","10","11"]}`, "too_large", "queue"},
		{"unknown type", `{"type":"hello"}`, "unknown_type", "hello"},
		{"chat while idle", `{"type":"chat","room":"x","text":"hi"}`, "wrong_state", "chat"},
		{"typing while idle", `{"type":"typing","room":"x","on":true}`, "wrong_state", "typing"},
		{"offer while idle", `{"type":"offer","room":"x","sdp":"v=0"}`, "wrong_state", "offer"},
		{"candidate while idle", `{"type":"candidate","room":"x","candidate":null}`, "wrong_state", "candidate"},
		{"ready while idle", `{"type":"ready","room":"x"}`, "wrong_state", "ready"},
		{"cancel while idle", `{"type":"cancel"}`, "wrong_state", "cancel"},
		{"report while idle", `{"type":"report","room":"x","reason":"r"}`, "wrong_state", "report"},
		{"fallback while idle", `{"type":"fallback","room":"x","reason":"r"}`, "wrong_state", "fallback"},
		{"bad leg", `{"type":"offer","room":"x","sdp":"v=0","leg":"mars"}`, "bad_request", "offer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := a.in(t)
			a.sendRaw(websocket.TextMessage, []byte(tt.frame))
			a.expectError(tt.code, tt.ref)
		})
	}
	t.Run("binary frame", func(t *testing.T) {
		a := a.in(t)
		a.sendRaw(websocket.BinaryMessage, []byte{1, 2, 3})
		a.expectError("bad_request", "")
	})
	t.Run("connection survives errors", func(t *testing.T) {
		a := a.in(t)
		a.send(wire.Request{Type: wire.TypeQueue, Mode: wire.ModeVideo})
		a.expect("queued")
		a.send(wire.Request{Type: wire.TypeQueue, Mode: wire.ModeVideo})
		a.expectError("wrong_state", "queue")
		a.send(wire.Request{Type: wire.TypeCancel})
		a.expect("idle")
	})
	t.Run("frame over max closes 1009", func(t *testing.T) {
		big := dial(t, n.ws, "big", nil)
		big.sendRaw(websocket.TextMessage, []byte(`{"type":"chat","text":"`+strings.Repeat("x", 5000)+`"}`))
		if code := big.closeCode(5 * time.Second); code != websocket.CloseMessageTooBig {
			t.Fatalf("close code %d, want 1009", code)
		}
	})
}

func TestRoomErrors(t *testing.T) {
	n := startNode(t, noSFU(testConfig(t)))
	a, b, room := pair(t, dial(t, n.ws, "a", nil), dial(t, n.ws, "b", nil), "video")
	c, d, other := pair(t, dial(t, n.ws, "c", nil), dial(t, n.ws, "d", nil), "video")
	for _, x := range []*client{a, b, c, d} {
		x.send(wire.Request{Type: wire.TypeReady, Room: map[*client]string{a: room, b: room, c: other, d: other}[x]})
	}
	// a names c/d's room: refused, nothing reaches c or d.
	for _, typ := range []string{"chat", "offer", "candidate", "typing", "ready", "report", "fallback"} {
		a.send(map[string]any{"type": typ, "room": other, "text": "hijack", "sdp": "v=0", "candidate": nil, "on": true, "reason": "x"})
		a.expectError("not_in_room", typ)
	}
	a.send(wire.Request{Type: wire.TypeChat, Text: ptr("no room")})
	a.expectError("bad_request", "chat")
	a.send(wire.Request{Type: wire.TypeOffer, Room: room})
	a.expectError("bad_request", "offer")
	a.send(map[string]any{"type": "candidate", "room": room, "candidate": "text"})
	a.expectError("bad_request", "candidate")
	a.send(wire.Request{Type: wire.TypeTyping, Room: room})
	a.expectError("bad_request", "typing")
	a.send(wire.Request{Type: wire.TypeFallback, Room: room, Reason: "ice failed"})
	a.expectError("unavailable", "fallback")
	// c and d saw nothing: their next message is the chat they send each other.
	c.send(wire.Request{Type: wire.TypeChat, Room: other, Text: ptr("only us")})
	if m := d.expect("chat"); m.str("text") != "only us" {
		t.Fatalf("d got %v", m)
	}
	d.send(wire.Request{Type: wire.TypeChat, Room: other, Text: ptr("yes")})
	if m := c.expect("chat"); m.str("text") != "yes" {
		t.Fatalf("c got %v", m)
	}
	// and the room a is in still works
	b.send(wire.Request{Type: wire.TypeChat, Room: room, Text: ptr("still here")})
	if m := a.expect("chat"); m.str("text") != "still here" {
		t.Fatalf("a got %v", m)
	}
}

func TestNextLeaveReport(t *testing.T) {
	cfg := testConfig(t)
	cfg.Matcher.AvoidRepeat = 0
	n := startNode(t, cfg)
	a, b, room := pair(t, dial(t, n.ws, "a", nil), dial(t, n.ws, "b", nil), "text")

	a.send(wire.Request{Type: wire.TypeNext})
	a.expect("queued")
	if m := b.expect("peer_left"); m.str("reason") != "next" || m.str("room") != room {
		t.Fatalf("peer_left = %v", m)
	}
	// next while waiting only answers queued
	a.send(wire.Request{Type: wire.TypeNext})
	a.expect("queued")
	// b is idle after peer_left: chat is wrong_state, next queues again
	b.send(wire.Request{Type: wire.TypeChat, Room: room, Text: ptr("x")})
	b.expectError("wrong_state", "chat")
	b.send(wire.Request{Type: wire.TypeNext})
	b.expect("queued")
	room2 := a.expect("matched").str("room")
	b.expect("matched")
	if room2 == room {
		t.Fatal("new room reused the old code")
	}

	// leave: stranger gets peer_left leave, leaver gets idle
	a.send(wire.Request{Type: wire.TypeLeave})
	a.expect("idle")
	if m := b.expect("peer_left"); m.str("reason") != "leave" {
		t.Fatalf("peer_left = %v", m)
	}
	// leave while waiting
	a.send(wire.Request{Type: wire.TypeQueue, Mode: wire.ModeText})
	a.expect("queued")
	a.send(wire.Request{Type: wire.TypeLeave})
	a.expect("idle")
	// leave while idle
	a.send(wire.Request{Type: wire.TypeLeave})
	a.expect("idle")

	// report: recorded, stranger gets reported, reporter re-queued
	a2, b2, room3 := pair(t, a, b, "text")
	a2.send(wire.Request{Type: wire.TypeReport, Room: room3, Reason: "spam"})
	a2.expect("queued")
	if m := b2.expect("peer_left"); m.str("reason") != "reported" || m.str("room") != room3 {
		t.Fatalf("peer_left = %v", m)
	}
	resp, err := http.Get(n.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(body), "duet_reports_total 1") {
		t.Fatal("report not recorded in duet_reports_total")
	}
}

func TestOrigin(t *testing.T) {
	n := startNode(t, testConfig(t))
	host := strings.TrimPrefix(n.url, "http://")
	tests := []struct {
		origin string
		want   int
	}{
		{"", http.StatusSwitchingProtocols},
		{"http://" + host, http.StatusSwitchingProtocols},
		{"http://evil.example", http.StatusForbidden},
		{"http://" + host + ".evil.example", http.StatusForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.origin, func(t *testing.T) {
			hdr := http.Header{}
			if tt.origin != "" {
				hdr.Set("Origin", tt.origin)
			}
			ws, resp, err := websocket.DefaultDialer.Dial(n.ws, hdr)
			if ws != nil {
				ws.Close()
			}
			if resp == nil {
				t.Fatalf("no HTTP response: %v", err)
			}
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
		})
	}
}

func TestRateLimited(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.ChatRate, cfg.Limits.ChatBurst = 1, 5
	n := startNode(t, cfg)
	a, b, room := pair(t, dial(t, n.ws, "a", nil), dial(t, n.ws, "b", nil), "text")
	for i := 0; i < 20; i++ {
		a.send(wire.Request{Type: wire.TypeChat, Room: room, Text: ptr(fmt.Sprint("m", i))})
	}
	got := 0
	for {
		m := a.read(5 * time.Second)
		if m.str("type") == "error" && m.str("code") == "rate_limited" && m.str("ref") == "chat" {
			break
		}
		t.Fatalf("flooder got %v, want rate_limited", m)
	}
	// The stranger receives the burst and not the flood, in order.
	b.send(wire.Request{Type: wire.TypeTyping, Room: room, On: ptr(true)})
	for {
		m := b.expect("chat")
		if m.str("text") != fmt.Sprint("m", got) {
			t.Fatalf("chat %d = %v", got, m)
		}
		got++
		if got == 5 {
			break
		}
	}
	// Other message classes still flow: signalling is not starved by chat.
	b.send(wire.Request{Type: wire.TypeTyping, Room: room, On: ptr(false)})
	if m := a.read(5 * time.Second); m.str("type") == "error" {
		// the flood may have produced a few more notices; they must all be rate_limited
		for m.str("type") == "error" {
			if m.str("code") != "rate_limited" {
				t.Fatalf("unexpected error %v", m)
			}
			m = a.read(5 * time.Second)
		}
		if m.str("type") != "typing" {
			t.Fatalf("got %v, want typing", m)
		}
	}
}

// TestThousandJoinThenNextTwice: 1,000 sockets queue at once: exactly 500
// rooms, nobody in two, nobody with themselves. Then everyone presses Next
// at the same moment, twice, and the same holds each round.
func TestHTTPEndpoints(t *testing.T) {
	n := startNode(t, testConfig(t))
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, _ := getJSON(t, n.url+path); code != 200 {
			t.Errorf("%s = %d", path, code)
		}
	}
	a := dial(t, n.ws, "a", nil)
	a.send(wire.Request{Type: wire.TypeQueue, Mode: wire.ModeText})
	a.expect("queued")
	code, st := getJSON(t, n.url+"/api/stats")
	if code != 200 || st["online"] != float64(1) || fmt.Sprint(st["waiting"]) != "map[text:1 video:0]" {
		t.Errorf("/api/stats = %d %v", code, st)
	}
	resp, err := http.Get(n.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, name := range []string{"duet_sessions 1", `duet_waiting{mode="text"} 1`, `duet_messages_total{type="queue"} 1`,
		"duet_match_latency_seconds", "duet_matches_total", "duet_errors_total"} {
		if !strings.Contains(string(body), name) {
			t.Errorf("/metrics lacks %q", name)
		}
	}
	resp, err = http.Get(n.url + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), `id="start-video"`) {
		t.Error("/ does not serve the client")
	}
}

// TestMissedPongsDropTheSocket: a client that stops answering pings (here:
// stops reading, so its pong handler never runs) is dropped after two
// missed pongs, and its stranger is told it is reconnecting.
// TestPongsKeepTheSocket: clients that answer pings (gorilla does while
// reading) stay connected across many ping intervals.
// TestBinaryFloodIsRateLimited: binary frames spend the same budget as
// text ones, so a flood of them is cut short with rate_limited.
func TestBinaryFloodIsRateLimited(t *testing.T) {
	cfg := testConfig(t)
	cfg.Limits.MessageRate, cfg.Limits.MessageBurst = 10, 20
	n := startNode(t, cfg)
	a := dial(t, n.ws, "a", nil)
	for i := 0; i < 60; i++ {
		a.sendRaw(websocket.BinaryMessage, []byte{0xff})
	}
	badRequests := 0
	for {
		m := a.expect("error")
		if m.str("code") == "rate_limited" {
			break
		}
		if m.str("code") != "bad_request" {
			t.Fatalf("got %v", m)
		}
		if badRequests++; badRequests > 40 {
			t.Fatal("no rate_limited within 40 binary frames (burst 20)")
		}
	}
}

// TestTrustedProxies: behind a listed proxy each client's own address
// counts for the per-address limit; without the listing a client cannot
// buy a fresh address by sending X-Forwarded-For.
func TestTrustedProxies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		trusted []string
		second  bool // the second client, from another forwarded address, gets in
	}{
		{"trusted", []string{"127.0.0.1"}, true},
		{"not trusted", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(t)
			cfg.Limits.ConnectionsPerIP = 1
			cfg.HTTP.TrustedProxies = tc.trusted
			n := startNode(t, cfg)
			dial(t, n.ws, "first", http.Header{"X-Forwarded-For": {"198.51.100.1"}})
			ws, resp, err := websocket.DefaultDialer.Dial(n.ws, http.Header{"X-Forwarded-For": {"198.51.100.2"}})
			if ws != nil {
				ws.Close()
			}
			got := err == nil
			if got != tc.second {
				code := 0
				if resp != nil {
					code = resp.StatusCode
				}
				t.Fatalf("second client admitted = %v (HTTP %d), want %v", got, code, tc.second)
			}
		})
	}
}

// TestFaceCheck: with signal.face_check on, welcome says so, and a video
// queue carries only the browser's yes/no, which the node counts.
func TestFaceCheck(t *testing.T) {
	cfg := testConfig(t)
	cfg.Signal.FaceCheck = true
	n := startNode(t, cfg)
	a := dial(t, n.ws, "a", nil)
	if f, _ := a.welcome["features"].(map[string]any); f["face_check"] != true {
		t.Fatalf("welcome features = %v, want face_check", a.welcome["features"])
	}
	a.send(map[string]any{"type": "queue", "mode": "video", "face": "a picture"})
	a.expectError("bad_request", "queue")
	for _, face := range []any{true, false, nil} {
		q := map[string]any{"type": "queue", "mode": "video"}
		if face != nil {
			q["face"] = face
		}
		a.send(q)
		a.expect("queued")
		a.send(wire.Request{Type: wire.TypeCancel})
		a.expect("idle")
	}
	resp, err := http.Get(n.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`duet_face_checks_total{result="face"} 1`, `duet_face_checks_total{result="no_face"} 1`, `duet_face_checks_total{result="no_detector"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if off := dial(t, startNode(t, testConfig(t)).ws, "off", nil); off.welcome["features"].(map[string]any)["face_check"] != false {
		t.Fatal("face_check advertised while off")
	}
}
