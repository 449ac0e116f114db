package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
	"time"
)

const powChecking = "Checking you're not a bot…"

// watchStatuses records every text #status shows, from now on.
func (p *page) watchStatuses() {
	p.t.Helper()
	evalOn[bool](p, `window.__statuses = [];
		new MutationObserver(() => window.__statuses.push(document.querySelector("#status").textContent.trim()))
			.observe(document.querySelector("#status"), {childList: true, characterData: true, subtree: true});
		true`)
}

// checks is how many times the page has started the bot check so far.
func (p *page) checks() int {
	p.t.Helper()
	return int(evalOn[float64](p, `window.__statuses.filter((s, i, a) => s === `+jsString(powChecking)+` && a[i-1] !== s).length`))
}

// TestBrowserPOW: with bots.pow on, real pages solve the node's
// challenge in a Worker before they queue, meet, and solve again when
// the pass one solution bought (two joins here) runs out during Next. A
// page that cannot solve says so plainly and stays idle.
func TestBrowserPOW(t *testing.T) {
	d := startDuet(t, "DUET_BOTS_POW=true", "DUET_BOTS_POW_KEY=e2e-pow-key",
		"DUET_BOTS_POW_PASS_JOINS=2", "DUET_MATCHER_AVOID_REPEAT=0s")
	ctx := browser(t)
	a := openPage(t, ctx, "A", "http://"+d.addr+"/")
	b := openPage(t, ctx, "B", "http://"+d.addr+"/")
	for _, p := range []*page{a, b} {
		p.watchStatuses()
	}
	start := time.Now()
	a.click("#start-text")
	a.waitStatus("Looking for someone…", 60*time.Second)
	t.Logf("A: Start to queued with a solve at the base cost: %v", time.Since(start).Round(time.Millisecond))
	b.click("#start-text")
	for _, p := range []*page{a, b} {
		p.waitStatus("Connected", 60*time.Second)
		if n := p.checks(); n != 1 {
			t.Fatalf("%s: the bot check ran %d times before the first stranger, want 1", p.name, n)
		}
	}

	// Next is each one's second join: on the pass, no new check.
	a.click("#next")
	b.waitStatus("Stranger has disconnected", 15*time.Second)
	b.click("#next")
	for _, p := range []*page{a, b} {
		p.waitStatus("Connected", 30*time.Second)
		if n := p.checks(); n != 1 {
			t.Fatalf("%s: Next on a pass ran the check (%d checks)", p.name, n)
		}
	}
	// The third join: the node refuses, the page solves and goes on.
	a.click("#next")
	b.waitStatus("Stranger has disconnected", 30*time.Second)
	b.click("#next")
	for _, p := range []*page{a, b} {
		p.waitStatus("Connected", 60*time.Second)
		if n := p.checks(); n != 2 {
			t.Fatalf("%s: %d checks after the pass ran out, want 2", p.name, n)
		}
	}
	a.chat("paid twice")
	b.waitChatFromStranger("paid twice")
	t.Logf("the page's worker: %.0f SHA-256 a second", workerRate(a))

	// A browser that cannot run the check (no Workers here) is told why,
	// and stays idle.
	c := openPage(t, ctx, "C", "http://"+d.addr+"/")
	evalOn[bool](c, `window.Worker = function () { throw new Error("workers are off"); }; true`)
	c.click("#start-text")
	c.waitTrue(30*time.Second, `[...document.querySelectorAll("#chat-log li")].some(e => e.textContent.includes("The check that you're not a bot failed: workers are off; try again"))`)
	if st := evalOn[string](c, `window.duet.state`); st != "idle" {
		t.Fatalf("C: state %q after the check failed, want idle", st)
	}
	c.waitStatus("Press Start to meet someone", 5*time.Second)
}

// workerRate has the page's worker solve two challenges made here: one
// whose salt runs over SHA-256's first block (a salt of another server
// may), and one whose number is 300000, timed in the page; it returns
// hashes a second.
func workerRate(p browserPage) float64 {
	solve := func(salt string, n, max int) float64 {
		sum := sha256.Sum256([]byte(salt + strconv.Itoa(n)))
		return evalAs[float64](p, `new Promise((resolve, reject) => {
			const w = new Worker("/pow-worker.js"), t0 = performance.now();
			w.onmessage = (e) => {
				if (typeof e.data.progress === "number") return;
				w.terminate();
				if (e.data.number === `+strconv.Itoa(n)+`) resolve(`+strconv.Itoa(n+1)+` / ((performance.now() - t0) / 1000));
				else reject(new Error(JSON.stringify(e.data)));
			};
			w.postMessage({salt: `+jsString(salt)+`, challenge: "`+hex.EncodeToString(sum[:])+`", max: `+strconv.Itoa(max)+`});
		})`)
	}
	solve(strings.Repeat("long salt ", 12)+"?expires=1790000000&", 4321, 10000)
	return solve("0123456789abcdef01234567?expires=1790000000&", 300000, 400000)
}

// TestFirefoxPOW: a Firefox page solves the node's challenge too, and
// meets a Chromium page that did.
func TestFirefoxPOW(t *testing.T) {
	d := startDuet(t, "DUET_BOTS_POW=true", "DUET_BOTS_POW_KEY=e2e-pow-key")
	ff := startFirefox(t)
	a := openFirefoxPage(t, ff, "A", "http://"+d.addr+"/")
	b := openPage(t, browser(t), "B", "http://"+d.addr+"/")
	shotsOnFailure(t, a, b)
	t.Logf("Firefox's worker: %.0f SHA-256 a second", workerRate(a))
	a.click("#start-text")
	waitStatusOn(a, "Looking for someone…", 60*time.Second)
	b.click("#start-text")
	for _, p := range []browserPage{a, b} {
		waitStatusOn(p, "Connected", 60*time.Second)
	}
	chatOn(a, "paid in Firefox")
	waitChatOn(b, "paid in Firefox")
}
