package e2e

import (
	"testing"
	"time"
)

// TestFirefoxShield: the nudity shield in a real headless Firefox, on the
// video of a Chromium stranger (its default fake camera): the user's own
// choice of blur-until-safe blurs the video at first, the real model runs
// in Firefox's worker and the video unblurs once it classifies safe.
func TestFirefoxShield(t *testing.T) {
	ff := startFirefox(t)
	cr := startBrowser(t, chromedpLoopback())
	d := startDuet(t)
	url := "http://" + d.addr + "/"

	fx := openFirefoxPage(t, ff, "firefox", url+"?shieldtest")
	ch := openPage(t, cr, "chromium", url)
	shotsOnFailure(t, fx, ch)
	evalAs[bool](fx, `const s = document.querySelector("#shield-mode"); s.value = "blur-until-safe"; s.dispatchEvent(new Event("change")); true`)
	if got := evalAs[string](fx, `localStorage.getItem("duet.shield")`); got != "blur-until-safe" {
		t.Fatalf("the choice was not kept: %q", got)
	}
	fx.click("#start-video")
	waitStatusOn(fx, "Looking for someone…", 60*time.Second)
	ch.click("#start-video")
	waitStatusOn(fx, "Connected", 60*time.Second)
	fx.waitTrue(60*time.Second, `document.querySelector("#remote-video").videoWidth > 0`)
	if !evalAs[bool](fx, blurred) && evalAs[float64](fx, `window.__duetShieldTest ? window.__duetShieldTest.stats.frames : 0`) < 2 {
		t.Fatal("the stranger's video showed before two frames were checked")
	}
	fx.waitTrue(120*time.Second, `!`+blurred)
	st := evalAs[map[string]any](fx, `window.__duetShieldTest.stats`)
	if st["error"] != "" || st["frames"].(float64) < 2 {
		t.Fatalf("Firefox's shield: %v", st)
	}
	t.Logf("Firefox's shield: %v", st)
}
