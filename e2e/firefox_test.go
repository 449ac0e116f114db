package e2e

import (
	"encoding/json"
	"testing"
	"time"
)

// TestFirefoxChromium: a real headless Firefox and a real headless
// Chromium, each with a fake camera, call each other through duet on
// every path a node offers: direct, relay-only (turn.mode: always) and
// through the SFU (sfu.mode: always); they chat both ways in a video call
// and in text mode; and Firefox presses Next and meets a third page. The
// checks are what the users see (status, path line, the stranger's video
// playing with new frames, chat lines) and what the node reports in
// /api/rooms, never one browser's candidate labels: Firefox may call the
// far end of a relay-only pair "prflx" where Chromium says "relay".
//
// One Firefox and one Chromium serve every subtest; each subtest runs its
// own node, configured for its path, and closes its tabs.
func TestFirefoxChromium(t *testing.T) {
	ff := startFirefox(t)
	cr := browser(t)
	const token = "firefox-admin"

	t.Run("direct", func(t *testing.T) {
		d := startDuet(t, "DUET_ADMIN_TOKEN="+token)
		url := "http://" + d.addr + "/"
		fx := openFirefoxPage(t, ff, "firefox", url)
		ch := openPage(t, cr, "chromium", url)
		shotsOnFailure(t, fx, ch)
		room := videoCall(t, ch, fx, "Direct")
		waitRoomPath(t, d.addr, token, room, "p2p")

		chatOn(fx, "hello from Firefox")
		waitChatOn(ch, "hello from Firefox")
		chatOn(ch, "hi Firefox, Chromium here 👋")
		waitChatOn(fx, "hi Firefox, Chromium here 👋")
		fx.screenshot("direct-firefox.png")
		ch.screenshot("direct-chromium.png")

		// A third stranger arrives; Firefox presses Next and meets it.
		c := openPage(t, cr, "chromium-C", url)
		shotsOnFailure(t, c)
		c.click("#start-video")
		waitStatusOn(c, "Looking for someone…", 15*time.Second)
		fx.click("#next")
		waitStatusOn(ch, "Stranger has disconnected", 15*time.Second)
		for _, p := range []browserPage{fx, c} {
			waitStatusOn(p, "Connected", 30*time.Second)
			waitRemotePlaying(p)
		}
		room2 := evalAs[string](fx, `window.duet.room`)
		if room2 == room || evalAs[string](c, `window.duet.room`) != room2 {
			t.Fatalf("after Next: Firefox in %q (was %q), C in %q", room2, room, evalAs[string](c, `window.duet.room`))
		}
		waitRoomPath(t, d.addr, token, room2, "p2p")
		fx.screenshot("next-firefox.png")
	})

	t.Run("relay only", func(t *testing.T) {
		d := startDuet(t, "DUET_ADMIN_TOKEN="+token,
			"DUET_TURN_SECRET=firefox-secret",
			"DUET_TURN_MODE=always",
			// Both browsers' relay addresses are on loopback here; the
			// default policy rightly refuses loopback peers.
			"DUET_TURN_ALLOWED_PEER_CIDRS=127.0.0.0/8",
		)
		url := "http://" + d.addr + "/"
		fx := openFirefoxPage(t, ff, "firefox", url)
		ch := openPage(t, cr, "chromium", url)
		shotsOnFailure(t, fx, ch)
		room := videoCall(t, fx, ch, "Relay via TURN")
		waitRoomPath(t, d.addr, token, room, "turn")
		fx.screenshot("relay-firefox.png")
	})

	t.Run("sfu", func(t *testing.T) {
		d := startDuet(t, "DUET_ADMIN_TOKEN="+token, "DUET_SFU_MODE=always")
		url := "http://" + d.addr + "/"
		fx := openFirefoxPage(t, ff, "firefox", url)
		ch := openPage(t, cr, "chromium", url)
		shotsOnFailure(t, fx, ch)
		room := videoCall(t, fx, ch, "Relay via server")
		waitRoomPath(t, d.addr, token, room, "sfu")
		// Both browsers answer active: the node is the DTLS server of both
		// UDP legs and its shortcut forwards the media.
		checkShortcut(t, func() float64 { return metricValue(t, d.addr, shortcutSeries) }, 0, true)
		chatOn(ch, "over the SFU")
		waitChatOn(fx, "over the SFU")
		fx.screenshot("sfu-firefox.png")
	})

	t.Run("text", func(t *testing.T) {
		d := startDuet(t)
		url := "http://" + d.addr + "/"
		fx := openFirefoxPage(t, ff, "firefox", url)
		ch := openPage(t, cr, "chromium", url)
		shotsOnFailure(t, fx, ch)
		for _, p := range []browserPage{fx, ch} {
			p.typeText("#interests", "chess, jazz")
			p.click("#start-text")
		}
		for _, p := range []browserPage{fx, ch} {
			waitStatusOn(p, "Connected", 15*time.Second)
			p.waitTrue(5*time.Second, `document.querySelector("#common").textContent.includes("chess")`)
		}
		chatOn(fx, "plain text from Firefox")
		waitChatOn(ch, "plain text from Firefox")
		chatOn(ch, "and back from Chromium ✓")
		waitChatOn(fx, "and back from Chromium ✓")
		for _, p := range []browserPage{fx, ch} {
			if evalAs[bool](p, `window.duet.pc !== null`) {
				t.Fatalf("%s: text mode created an RTCPeerConnection", p.label())
			}
		}
		fx.screenshot("text-firefox.png")
	})
}

// videoCall has first, then second press Start video, waits until both
// are connected, show path (the line a user reads under the video) and
// play each other's video, and returns their room.
func videoCall(t *testing.T, first, second browserPage, path string) string {
	t.Helper()
	first.click("#start-video")
	waitStatusOn(first, "Looking for someone…", 15*time.Second)
	second.click("#start-video")
	for _, p := range []browserPage{first, second} {
		waitStatusOn(p, "Connected", 30*time.Second)
		waitRemotePlaying(p)
		p.waitTrue(20*time.Second, `document.querySelector("#path").textContent === `+jsString(path))
	}
	room := evalAs[string](first, `window.duet.room`)
	if got := evalAs[string](second, `window.duet.room`); got != room || room == "" {
		t.Fatalf("%s in room %q, %s in %q", first.label(), room, second.label(), got)
	}
	t.Logf("room %s: %s is the %s", room, first.label(), evalAs[string](first, `window.duet.role`))
	return room
}

// waitRoomPath polls the node's admin API until room is on path and, on
// the paths that pass through the node, has carried bytes both ways.
func waitRoomPath(t *testing.T, addr, token, room, path string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var body []byte
	for {
		body = httpGet(t, "http://"+addr+"/api/rooms/"+room, token)
		var v labRoom
		if json.Unmarshal(body, &v) == nil && v.Path == path &&
			(path == "p2p" || (v.AToB.Bytes > 0 && v.BToA.Bytes > 0)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("room %s never showed path %s in /api/rooms: %s", room, path, body)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
