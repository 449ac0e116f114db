package e2e

import (
	"testing"
	"time"
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
	a.click("#start-video")
	a.waitStatus("Looking for someone…", 15*time.Second)
	b.click("#start-video")
	a.waitStatus("Connected", 30*time.Second)
	a.waitTrue(30*time.Second, `document.querySelector("#remote-video").videoWidth > 0`)
	if !evalOn[bool](a, blurred) {
		t.Fatal("the stranger's video shows before any frame was checked")
	}
	a.waitTrue(60*time.Second, `!`+blurred)
	t.Logf("stats: %v", evalOn[map[string]any](a, `window.__duetShieldTest.stats`))
}
