package e2e

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/duetchat/duet/wire"
)

// blurred says whether the page shows the stranger's video blurred.
const blurred = `getComputedStyle(document.querySelector("#remote-video")).filter.includes("blur")`

// TestBrowserShieldSafeStream: under blur-until-safe a real Chromium runs
// the real model on the stranger's video (Chromium's default fake camera)
// and unblurs it once the first frames classify safe.
func TestBrowserShieldSafeStream(t *testing.T) {
	ctx := browser(t)
	d := startDuet(t)
	a := openPage(t, ctx, "A", "http://"+d.addr+"/?shieldtest")
	b := openPage(t, ctx, "B", "http://"+d.addr+"/")
	evalOn[bool](a, `localStorage.setItem("duet.shield", "blur-until-safe"); document.querySelector("#shield-mode").value = "blur-until-safe"; document.querySelector("#shield-mode").dispatchEvent(new Event("change")); true`)
	logShieldOnFailure(t, a)
	a.click("#start-video")
	a.waitStatus("Looking for someone…", 15*time.Second)
	b.click("#start-video")
	a.waitStatus("Connected", 30*time.Second)
	a.waitTrue(30*time.Second, `document.querySelector("#remote-video").videoWidth > 0`)
	if !evalOn[bool](a, blurred) {
		t.Fatal("the stranger's video shows before any frame was checked")
	}
	a.waitTrue(90*time.Second, `!`+blurred)
	t.Logf("shield: %v", evalOn[map[string]any](a, `window.__duetShieldTest.stats`))
}

// logShieldOnFailure logs what the page's shield saw when the test fails.
func logShieldOnFailure(t *testing.T, p *page) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		ctx, cancel := withTimeout(p.ctx, 3*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`JSON.stringify(window.__duetShieldTest ? window.__duetShieldTest.stats : null)`))
		t.Logf("%s: shield stats %s %v", p.name, v, err)
	})
}

// metricValue reads one series of the node's /metrics; -1 when absent.
func metricValue(t *testing.T, addr, series string) float64 {
	t.Helper()
	for _, l := range strings.Split(string(httpGet(t, "http://"+addr+"/metrics", "")), "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %v", l, err)
			}
			return f
		}
	}
	return -1
}

// waitMetric polls the node's /metrics until series reads want.
func waitMetric(t *testing.T, addr, series string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := metricValue(t, addr, series)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v, want %v", series, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func shieldSeries(event string) string {
	return `duet_shield_events_total{event="` + event + `"}`
}

// TestBrowserShieldDetection: with the operator's blur-on-detect and
// shield reports banning sooner, the real page shows the stranger's video
// (the real model finds it safe), and a flagged frame (injected through
// the test hook: no test ships explicit material) blurs it at once and
// offers Next and Report. Report sends reason "nudity"; the node counts
// each event and the report, bans the stranger after one such report,
// and never receives anything but small JSON counts from the shield.
func TestBrowserShieldDetection(t *testing.T) {
	ctx := browser(t)
	d := startDuet(t, "DUET_MODERATION_SHIELD=blur-on-detect", "DUET_MODERATION_SHIELD_REPORTS_TO_BAN=1")
	a := openPage(t, ctx, "A", "http://"+d.addr+"/?shieldtest")
	b := openPage(t, ctx, "B", "http://"+d.addr+"/")
	// Every frame A's page sends, as the node would get it.
	logShieldOnFailure(t, a)
	evalOn[bool](a, `(() => {
		const ws = window.duet.ws, send = ws.send.bind(ws);
		window.__sent = [];
		ws.send = (data) => { window.__sent.push(String(data)); send(data); };
		return true;
	})()`)
	if got := evalOn[string](a, `document.body.dataset.shield`); got != "blur-on-detect" {
		t.Fatalf("body[data-shield] = %q, want the operator's blur-on-detect", got)
	}
	if got := evalOn[string](a, `document.querySelector("#shield-mode").options[0].textContent`); !strings.Contains(got, "blur on detect") {
		t.Fatalf("the default option reads %q", got)
	}
	a.click("#start-video")
	a.waitStatus("Looking for someone…", 15*time.Second)
	b.click("#start-video")
	a.waitStatus("Connected", 30*time.Second)
	a.waitMediaFlowing()
	// The real model looks at real frames; a safe one leaves the video shown.
	a.waitTrue(60*time.Second, `window.__duetShieldTest && window.__duetShieldTest.stats.frames >= 1`)
	if evalOn[bool](a, blurred) {
		t.Fatalf("blur-on-detect blurred a safe stream: %v", evalOn[map[string]any](a, `window.__duetShieldTest.stats`))
	}

	evalOn[bool](a, `window.__duetShieldTest.inject("porn"); true`)
	if !evalOn[bool](a, blurred) {
		t.Fatal("a flagged frame did not blur the video at once")
	}
	a.waitTrue(5*time.Second, `!document.querySelector("#shield-prompt").hidden &&
		!document.querySelector("#shield-prompt .shield-next").hidden &&
		!document.querySelector("#shield-prompt .shield-report").hidden`)
	a.screenshot("shield-detected.png")
	waitMetric(t, d.addr, shieldSeries("detected"), 1)

	a.click("#shield-prompt .shield-report")
	a.waitStatus("Looking for someone…", 10*time.Second)
	b.waitStatus("Stranger has disconnected", 10*time.Second)
	waitMetric(t, d.addr, shieldSeries("reported"), 1)
	// One shield-backed report bans (shield_reports_to_ban 1 of 3).
	b.click("#next")
	b.waitTrue(10*time.Second, `[...document.querySelectorAll("#chat-log .system")].some(e => e.textContent.includes("banned"))`)
	if evalOn[bool](a, blurred) {
		t.Fatal("the next stranger starts blurred under blur-on-detect")
	}

	// What left A's page: shield frames are {type, room, event} and
	// nothing A sent is large enough to carry a picture.
	sent := evalOn[[]string](a, `window.__sent`)
	shieldFrames := 0
	for _, f := range sent {
		var m map[string]any
		if err := json.Unmarshal([]byte(f), &m); err != nil {
			t.Fatalf("A sent a frame that is not JSON: %.80q", f)
		}
		switch m["type"] {
		case "shield":
			shieldFrames++
			if len(m) != 3 || m["room"] == nil || m["event"] == nil {
				t.Errorf("shield frame carries more than counts: %s", f)
			}
		case "report":
			if m["reason"] != "nudity" {
				t.Errorf("the shield's report: %s", f)
			}
		case "offer", "answer":
			continue // SDP
		}
		if len(f) > 2048 {
			t.Errorf("A sent a %d-byte %v frame", len(f), m["type"])
		}
	}
	if shieldFrames < 1 {
		t.Fatalf("A sent no shield frame: %q", sent)
	}
	waitMetric(t, d.addr, `duet_messages_total{type="shield"}`, float64(shieldFrames))
}

// TestShieldEventsCounted: the node's side of the shield over the
// protocol: welcome.features.shield carries the operator's default; each
// event a client may send is counted under its own label; anything else is
// refused with a clear error and counted nowhere; a nudity report after
// `detected` is a shield report, one without is not.
func TestShieldEventsCounted(t *testing.T) {
	d := startDuet(t, "DUET_MODERATION_SHIELD=blur-until-safe")
	a, b := dialPeer(t, d.addr, "", "a"), dialPeer(t, d.addr, "", "b")
	if got := a.welcome.Fields()["features"].(map[string]any)["shield"]; got != "blur-until-safe" {
		t.Fatalf("welcome.features.shield = %v", got)
	}
	a.ok(a.Queue(wire.ModeVideo))
	a.expect(wire.TypeQueued)
	b.ok(b.Queue(wire.ModeVideo))
	room := a.expect(wire.TypeMatched, wire.TypeQueued).Room
	b.expect(wire.TypeMatched, wire.TypeQueued)

	shield := func(p *wsPeer, room, event string) {
		f, _ := json.Marshal(map[string]string{"type": "shield", "room": room, "event": event})
		p.ok(p.SendRaw(f))
	}
	for _, tc := range []struct {
		room, event string
		code, msg   string // "" counted; else the error
	}{
		{room, "blurred", "", ""},
		{room, "unblurred", "", ""},
		{room, "revealed", "", ""},
		{room, "skipped", "", ""},
		{room, "unavailable", "", ""},
		{room, "nude", wire.CodeBadRequest, `unknown event "nude"`},
		{room, "", wire.CodeBadRequest, `needs an "event"`},
		{room, "reported", wire.CodeBadRequest, "unknown event"},
		{"not-my-room", "detected", wire.CodeNotInRoom, ""},
	} {
		shield(a, tc.room, tc.event)
		if tc.code != "" {
			m := a.expect(wire.TypeError)
			if m.Code != tc.code || m.Ref != "shield" || !strings.Contains(m.Message, tc.msg) {
				t.Errorf("%q in %q: %s, want %s with %q", tc.event, tc.room, m.Raw, tc.code, tc.msg)
			}
		}
	}
	for _, e := range []string{"blurred", "unblurred", "revealed", "skipped", "unavailable"} {
		waitMetric(t, d.addr, shieldSeries(e), 1)
	}
	waitMetric(t, d.addr, shieldSeries("detected"), 0)

	// b reports without its shield having flagged a: a plain report.
	b.ok(b.Send(wire.Request{Type: wire.TypeReport, Room: room, Reason: "nudity"}))
	a.expect(wire.TypePeerLeft)
	b.expect(wire.TypeQueued)
	waitMetric(t, d.addr, "duet_reports_total", 1)
	waitMetric(t, d.addr, shieldSeries("reported"), 0)

	// b meets c (a is idle) and its shield flags c: now the same report
	// is a shield report.
	c := dialPeer(t, d.addr, "", "c")
	c.ok(c.Queue(wire.ModeVideo))
	room2 := c.expect(wire.TypeMatched, wire.TypeQueued).Room
	b.expect(wire.TypeMatched)
	shield(b, room2, "detected")
	b.ok(b.Send(wire.Request{Type: wire.TypeReport, Room: room2, Reason: "nudity"}))
	c.expect(wire.TypePeerLeft)
	waitMetric(t, d.addr, shieldSeries("detected"), 1)
	waitMetric(t, d.addr, shieldSeries("reported"), 1)
}
