package node

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func metricsBody(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestSiteAPI(t *testing.T) {
	cfg := testConfig(t)
	cfg.Site.Rules, cfg.Site.MinAge = "Be kind.\nNo nudity.", 18
	cfg.Admin.Token = "tok"
	n := startNode(t, cfg)
	code, m := getJSON(t, n.url+"/api/site")
	if code != http.StatusOK || m.str("rules") != "Be kind.\nNo nudity." || m["min_age"] != float64(18) {
		t.Fatalf("/api/site = %d %v", code, m)
	}
	if got := fmt.Sprint(m["report_reasons"]); got != "[nudity harassment spam underage other]" {
		t.Fatalf("report_reasons = %s", got)
	}
	if m.str("chat_links") != "plain" {
		t.Fatalf("chat_links = %q, want the default plain", m.str("chat_links"))
	}
	if code, _ := getJSON(t, n.url+"/api/safety"); code != http.StatusUnauthorized {
		t.Fatalf("/api/safety without the token: %d, want 401", code)
	}
	req, _ := http.NewRequest("GET", n.url+"/api/safety", nil)
	req.Header.Set("Authorization", "Bearer tok")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`"feature":"links in chat"`, `"feature":"block"`, `"key":"site.rules, site.min_age"`, `minimum age 18`, `"feature":"nudity shield"`, `duet_shield_events_total`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/api/safety lacks %s: %s", want, body)
		}
	}
}

// talk has a and b exchange one chat each way.
func talk(t *testing.T, a, b *client, room string) {
	t.Helper()
	a.send(map[string]any{"type": "chat", "room": room, "text": "hello"})
	b.expect("chat")
	b.send(map[string]any{"type": "chat", "room": room, "text": "hi"})
	a.expect("chat")
}

func TestChatLinksPlain(t *testing.T) {
	cfg := testConfig(t)
	cfg.Signal.ChatLinks, cfg.Signal.ChatLinksAfter, cfg.Signal.ChatLinksAfterMessages = "plain", 0, 2
	n := startNode(t, cfg)
	a, b, room := pair(t, dial(t, n.ws, "a", nil), dial(t, n.ws, "b", nil), "text")
	a.send(map[string]any{"type": "chat", "room": room, "text": "no link here."})
	if m := b.expect("chat"); m["links"] != nil {
		t.Fatalf("a chat without a link came flagged: %v", m)
	}
	a.send(map[string]any{"type": "chat", "room": room, "text": "buy at example.com now"})
	if m := b.expect("chat"); m.str("links") != "plain" || m.str("text") != "buy at example.com now" {
		t.Fatalf("early link: %v, want the text as sent with links plain", m)
	}
	talk(t, a, b, room) // a has sent 3, b 1
	b.send(map[string]any{"type": "chat", "room": room, "text": "www.example.org"})
	if m := a.expect("chat"); m.str("links") != "plain" {
		t.Fatalf("b's link after one chat of its own: %v, want plain", m)
	}
	// b has now sent 2 chats, a 3: links go through as they are.
	a.send(map[string]any{"type": "chat", "room": room, "text": "https://example.com/x"})
	if m := b.expect("chat"); m["links"] != nil {
		t.Fatalf("link after the strangers talked: %v, want no flag", m)
	}
}

func TestChatLinksHold(t *testing.T) {
	cfg := testConfig(t)
	cfg.Signal.ChatLinks, cfg.Signal.ChatLinksAfter, cfg.Signal.ChatLinksAfterMessages = "hold", 0, 1
	n := startNode(t, cfg)
	a, b, room := pair(t, dial(t, n.ws, "a", nil), dial(t, n.ws, "b", nil), "text")
	a.send(map[string]any{"type": "chat", "room": room, "text": "t.me/freestuff"})
	if e := a.expectError("link_held", "chat"); !strings.Contains(e.str("message"), "1 message") {
		t.Fatalf("link_held message %q does not say when links go through", e.str("message"))
	}
	// Nothing reached b: its next frame is the chat after.
	talk(t, a, b, room)
	a.send(map[string]any{"type": "chat", "room": room, "text": "t.me/freestuff"})
	if m := b.expect("chat"); m.str("text") != "t.me/freestuff" || m["links"] != nil {
		t.Fatalf("link after talking: %v", m)
	}
	if body := metricsBody(t, n.url); !strings.Contains(body, `duet_errors_total{code="link_held"} 1`) {
		t.Error("held link not counted in duet_errors_total")
	}
}

// TestChatLinksAfterTime: with only a time threshold, a link is held at
// first and goes through once the room is old enough.
func TestChatLinksAfterTime(t *testing.T) {
	cfg := testConfig(t)
	cfg.Signal.ChatLinks, cfg.Signal.ChatLinksAfter, cfg.Signal.ChatLinksAfterMessages = "hold", 300*time.Millisecond, 0
	cfg.Limits.ChatRate, cfg.Limits.ChatBurst = 100, 100 // the retries below are not a flood
	n := startNode(t, cfg)
	a, b, room := pair(t, dial(t, n.ws, "a", nil), dial(t, n.ws, "b", nil), "text")
	a.send(map[string]any{"type": "chat", "room": room, "text": "example.net"})
	a.expectError("link_held", "chat")
	// Each retry is answered on exactly one side: a hears link_held, or
	// b gets the link. Both are read aside, so no read has to time out.
	frames := func(c *client) <-chan []byte {
		ch := make(chan []byte, 16)
		go func() {
			defer close(ch)
			for {
				_ = c.ws.SetReadDeadline(time.Now().Add(20 * time.Second))
				_, frame, err := c.ws.ReadMessage()
				if err != nil {
					return
				}
				ch <- frame
			}
		}()
		return ch
	}
	fromA, fromB := frames(a), frames(b)
	deadline := time.After(10 * time.Second)
	for {
		a.send(map[string]any{"type": "chat", "room": room, "text": "example.net"})
		select {
		case frame := <-fromB:
			if !strings.Contains(string(frame), "example.net") {
				t.Fatalf("b got %s, want the link", frame)
			}
			return
		case frame := <-fromA:
			if !strings.Contains(string(frame), "link_held") {
				t.Fatalf("a got %s, want link_held", frame)
			}
		case <-deadline:
			t.Fatal("no answer, or the link still held, 10 s into the room")
		}
		select {
		case <-time.After(50 * time.Millisecond): // retry pace, not a condition
		case <-deadline:
			t.Fatal("the link was still held 10 s into the room")
		}
	}
}

func TestReportReasons(t *testing.T) {
	cfg := testConfig(t)
	cfg.Matcher.AvoidRepeat = 0
	n := startNode(t, cfg)
	a, b, room := pair(t, dial(t, n.ws, "a", nil), dial(t, n.ws, "b", nil), "text")
	a.send(map[string]any{"type": "report", "room": room, "reason": strings.Repeat("é", 201)})
	if e := a.expectError("bad_request", "report"); !strings.Contains(e.str("message"), "nudity") {
		t.Fatalf("error %q does not list the reasons", e.str("message"))
	}
	// The room goes on.
	talk(t, a, b, room)
	a.send(map[string]any{"type": "report", "room": room, "reason": "nudity"})
	a.expect("queued")
	b.expect("peer_left")
	b.send(map[string]any{"type": "queue", "mode": "text"}) // a was queued already
	b.expect("queued")
	room2 := b.expect("matched").str("room")
	a.expect("matched")
	// Words of its own, as clients before the list send: a report all
	// the same, counted as other.
	b.send(map[string]any{"type": "report", "room": room2, "reason": "ugly"})
	b.expect("queued")
	a.expect("peer_left")
	a.send(map[string]any{"type": "queue", "mode": "text"})
	a.expect("queued")
	room3 := a.expect("matched").str("room")
	b.expect("matched")
	a.send(map[string]any{"type": "report", "room": room3}) // no reason: counts as other
	a.expect("queued")
	body := metricsBody(t, n.url)
	for _, want := range []string{`duet_report_reasons_total{reason="nudity"} 1`, `duet_report_reasons_total{reason="other"} 2`, `duet_report_reasons_total{reason="spam"} 0`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// queueMsg is a queue with this test's browser token.
func queueMsg(mode, me string, blocked ...string) map[string]any {
	if blocked == nil {
		blocked = []string{}
	}
	return map[string]any{"type": "queue", "mode": mode, "me": me, "blocked": blocked}
}

func TestBlockHandles(t *testing.T) {
	cfg := testConfig(t)
	cfg.Matcher.AvoidRepeat = 0 // only the block keeps them apart
	n := startNode(t, cfg)
	const meA, meB, meC = "aaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbbbbbbbb", "cccccccccccccccccccccc"
	a, b, c := dial(t, n.ws, "a", nil), dial(t, n.ws, "b", nil), dial(t, n.ws, "c", nil)

	// Bad tokens and lists are refused with a clear error.
	for _, tc := range []struct {
		q          map[string]any
		code, want string
	}{
		{queueMsg("text", "short"), "bad_request", "me must be"},
		{queueMsg("text", meA, "not a handle"), "bad_request", "handle"},
		{queueMsg("text", meA, strings.Repeat("x", 22)+"!"), "bad_request", "handle"},
		{queueMsg("text", meA, make([]string, 201)...), "too_large", "at most 200"},
	} {
		a.send(tc.q)
		if e := a.expectError(tc.code, "queue"); !strings.Contains(e.str("message"), tc.want) {
			t.Errorf("error %q, want it to say %q", e.str("message"), tc.want)
		}
	}

	withInterests := func(q map[string]any, in ...string) map[string]any {
		q["interests"] = in
		return q
	}
	meet := func() (handleForA, handleForB, room string) {
		t.Helper()
		a.send(withInterests(queueMsg("text", meA), "ab", "x"))
		a.expect("queued")
		b.send(withInterests(queueMsg("text", meB), "ab", "y"))
		b.expect("queued")
		ma, mb := a.expect("matched"), b.expect("matched")
		return ma.str("block"), mb.str("block"), ma.str("room")
	}
	h1, _, _ := meet()
	if len(h1) != 22 {
		t.Fatalf("matched.block = %q, want a 22-character handle", h1)
	}
	a.send(map[string]any{"type": "leave"})
	a.expect("idle")
	b.expect("peer_left")
	h2, _, _ := meet()
	if h1 == h2 {
		t.Fatal("two meetings gave the same handle for b: a could recognise b")
	}
	// a blocks b with the older handle (any handle a got for b works)
	// and moves on with next, as the page's Block does. a and b share an
	// interest, and each shares one with a third stranger: without the
	// block they would meet again at once; with it, each round c is
	// matched with the one it shares an interest with, never a with b.
	a.send(map[string]any{"type": "next", "blocked": []string{h1}})
	a.expect("queued")
	b.expect("peer_left")
	queueA := func() { a.send(withInterests(queueMsg("text", meA, h1), "ab", "x")); a.expect("queued") }
	queueB := func() { b.send(withInterests(queueMsg("text", meB), "ab", "y")); b.expect("queued") }
	queueB()
	for round := range 4 {
		partner, requeue, interest := a, queueA, "x"
		if round%2 == 1 {
			partner, requeue, interest = b, queueB, "y"
		}
		c.send(withInterests(queueMsg("text", meC), interest))
		c.expect("queued")
		mc, mp := c.expect("matched"), partner.expect("matched")
		if mc.str("room") != mp.str("room") {
			t.Fatalf("round %d: c in %s, %s in %s", round, mc.str("room"), partner.name, mp.str("room"))
		}
		// c leaves; the partner queues again beside the other, who still
		// waits, having heard nothing.
		c.send(map[string]any{"type": "leave"})
		c.expect("idle")
		partner.expect("peer_left")
		requeue()
	}
}

// TestLangCarried: queue.lang reaches the matcher, where it counts like
// an interest: two who chose German meet, the one who chose none waits.
func TestLangCarried(t *testing.T) {
	n := startNode(t, testConfig(t))
	de1, anyone, de2 := dial(t, n.ws, "de1", nil), dial(t, n.ws, "any", nil), dial(t, n.ws, "de2", nil)
	de1.send(map[string]any{"type": "queue", "mode": "text", "lang": "de"})
	de1.expect("queued")
	anyone.send(map[string]any{"type": "queue", "mode": "text"})
	anyone.expect("queued")
	de2.send(map[string]any{"type": "queue", "mode": "text", "lang": "de"})
	de2.expect("queued")
	if r1, r2 := de1.expect("matched").str("room"), de2.expect("matched").str("room"); r1 != r2 {
		t.Fatalf("the German speakers are in %s and %s", r1, r2)
	}
	if _, st := getJSON(t, n.url+"/api/stats"); fmt.Sprint(st["waiting"]) != "map[text:1 video:0]" {
		t.Fatalf("stats = %v, want the one with no language still waiting", st)
	}
}
