package e2e

import (
	"testing"
	"time"
)

// TestBrowserRelayOnly: with turn.mode: always (privacy mode) both pages
// connect through duet's TURN relay only, and say so.
func TestBrowserRelayOnly(t *testing.T) {
	ctx := browser(t)
	d := startDuet(t,
		"DUET_TURN_SECRET=browser-secret",
		"DUET_TURN_MODE=always",
		// Both browsers' relay addresses are on loopback here; the default
		// policy rightly refuses loopback peers, so this test allows it.
		"DUET_TURN_ALLOWED_PEER_CIDRS=127.0.0.0/8",
	)
	a := openPage(t, ctx, "A", "http://"+d.addr+"/")
	b := openPage(t, ctx, "B", "http://"+d.addr+"/")
	a.click("#start-video")
	b.click("#start-video")
	for _, p := range []*page{a, b} {
		p.waitStatus("Connected", 30*time.Second)
		p.waitMediaFlowing()
		p.waitTrue(10*time.Second, `(async () => {
			const pc = window.duet.pc; if (!pc) return false;
			const stats = await pc.getStats();
			let pair = null;
			stats.forEach(r => { if (r.type === "transport" && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId); });
			if (!pair) return false;
			const local = stats.get(pair.localCandidateId), remote = stats.get(pair.remoteCandidateId);
			return local.candidateType === "relay" && remote.candidateType === "relay";
		})()`)
		p.waitTrue(10*time.Second, `document.querySelector("#path").textContent.includes("Relay via TURN")`)
	}
	a.screenshot("relay.png")
}
