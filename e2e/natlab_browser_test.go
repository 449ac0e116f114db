package e2e

import (
	"encoding/json"
	"net"
	"testing"
	"time"
)

// selectedPair reads the selected candidate pair of the page's current
// connection from getStats.
const selectedPair = `(async () => {
	const pc = window.duet.pc; if (!pc) return "";
	const stats = await pc.getStats();
	let pair = null;
	stats.forEach(r => { if (r.type === "transport" && r.selectedCandidatePairId) pair = stats.get(r.selectedCandidatePairId); });
	if (!pair) return "";
	const l = stats.get(pair.localCandidateId), r = stats.get(pair.remoteCandidateId);
	return JSON.stringify({local_protocol: l.protocol, local_type: l.candidateType,
		remote_protocol: r.protocol, remote_type: r.candidateType, remote_address: r.address, remote_port: r.port});
})()`

type browserPair struct {
	LocalProtocol  string `json:"local_protocol"`
	LocalType      string `json:"local_type"`
	RemoteProtocol string `json:"remote_protocol"`
	RemoteType     string `json:"remote_type"`
	RemoteAddress  string `json:"remote_address"`
	RemotePort     int    `json:"remote_port"`
}

// TestNATLabBrowserSFU: two real Chromium browsers with fake cameras, each
// inside a client namespace of the NAT lab behind a symmetric NAT whose
// router drops all UDP and TCP to the TURN port; the node runs on the
// operator's config (startDuet). Neither P2P nor TURN can work, so the
// pages ask for the fallback by themselves and reach the SFU over ICE-TCP
// on public_ip:8443: both show "Relay via server", play each other's
// video, and the admin API shows the room on the sfu path with bytes
// growing both ways; the live admin page shows it too, with what the node
// binds and advertises.
func TestNATLabBrowserSFU(t *testing.T) {
	lab := newNATLab(t)
	lab.startDuet()
	lab.blockUDP(t)
	origin := "http://" + net.JoinHostPort(labServerIP, "8080")
	ctxA := browserIn(t, lab, "c1", origin)
	a := openPage(t, ctxA, "A", origin+"/")
	b := openPage(t, browserIn(t, lab, "c2", origin), "B", origin+"/")
	a.click("#start-video")
	a.waitStatus("Looking for someone…", 15*time.Second)
	b.click("#start-video")
	// The pages give up on P2P when ICE fails or past p2p_timeout (15 s
	// by default), then connect to the SFU.
	for _, p := range []*page{a, b} {
		p.waitTrue(60*time.Second, `document.querySelector("#path").textContent === "Relay via server" &&
			!!window.duet.pc && window.duet.pc.connectionState === "connected"`)
	}
	for _, p := range []*page{a, b} {
		p.waitMediaFlowing()
		var pair browserPair
		if err := json.Unmarshal([]byte(evalOn[string](p, selectedPair)), &pair); err != nil {
			t.Fatalf("%s: selected pair: %v", p.name, err)
		}
		t.Logf("%s: selected pair %+v", p.name, pair)
		if pair.LocalProtocol != "tcp" || pair.RemoteAddress != labServerIP || pair.RemotePort != 8443 {
			t.Fatalf("%s selected %+v; want ICE-TCP to the SFU at %s:8443", p.name, pair, labServerIP)
		}
	}
	room := evalOn[string](a, `window.duet.room`)
	if got := evalOn[string](b, `window.duet.room`); got != room || room == "" {
		t.Fatalf("rooms %q and %q", room, got)
	}
	if seen := lab.watchRoom("sfu", 30*time.Second, nil); seen.Room != room {
		t.Fatalf("the admin API never showed room %s on the sfu path with bytes growing both ways (saw %+v)", room, seen)
	}
	// This node carried nothing but these ICE-TCP legs: the shortcut,
	// UDP only, never ran.
	checkShortcut(t, labShortcut(t, lab), 0, false)
	a.screenshot("natlab-sfu.png")

	// The live admin page, opened from A's network, shows the room on the
	// SFU and what the node binds and advertises.
	admin := openAdmin(t, ctxA, origin+"/admin", labToken)
	admin.waitTrue(15*time.Second, `(() => {
		const row = document.getElementById("room-`+room+`");
		const net = document.querySelector("#net").textContent;
		return !!row && row.children[2].textContent === "sfu" &&
			net.includes("`+labServerIP+`: an address of this host") && net.includes("advertises `+labServerIP+`");
	})()`)
	admin.screenshot("natlab-admin.png")
}
