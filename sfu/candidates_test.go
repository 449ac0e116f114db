package sfu

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/pion/ice/v4"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/duetchat/duet/turn"
)

// testFilter is the node's filter: the TURN relay's default peer policy
// and 198.51.100.1 as the node's own (advertised) address.
func testFilter(t testing.TB, allowed, denied []string) *candidateFilter {
	t.Helper()
	p, err := turn.NewPeerPolicy(allowed, denied)
	if err != nil {
		t.Fatal(err)
	}
	return &candidateFilter{peers: p, own: map[netip.Addr]struct{}{
		netip.MustParseAddr("198.51.100.1"): {}, netip.MustParseAddr("127.0.0.1"): {},
	}}
}

func TestCheckCandidate(t *testing.T) {
	for _, tc := range []struct {
		name, cand, want string
		allowed, denied  []string
	}{
		{name: "public udp host", cand: "candidate:1 1 udp 2130706431 203.0.113.9 50000 typ host", want: ""},
		{name: "no candidate: prefix", cand: "1 1 udp 2130706431 203.0.113.9 50000 typ host", want: ""},
		{name: "public srflx, private related address", cand: "candidate:2 1 udp 1694498815 203.0.113.9 50000 typ srflx raddr 192.168.1.2 rport 50000", want: ""},
		{name: "public relay", cand: "candidate:3 1 udp 16777215 203.0.113.10 61000 typ relay raddr 203.0.113.9 rport 50000", want: ""},
		{name: "with extensions", cand: "candidate:1 1 udp 2130706431 203.0.113.9 50000 typ host generation 0 ufrag abcd network-id 1", want: ""},

		{name: "loopback", cand: "candidate:1 1 udp 2130706431 127.0.0.2 7001 typ host", want: dropPolicy},
		{name: "own loopback", cand: "candidate:1 1 udp 2130706431 127.0.0.1 7001 typ host", want: dropOwn},
		{name: "metadata", cand: "candidate:1 1 udp 2130706431 169.254.169.254 80 typ host", want: dropPolicy},
		{name: "10/8", cand: "candidate:1 1 udp 2130706431 10.1.2.3 7001 typ host", want: dropPolicy},
		{name: "172.16/12", cand: "candidate:1 1 udp 2130706431 172.31.255.254 7001 typ host", want: dropPolicy},
		{name: "192.168/16", cand: "candidate:1 1 udp 2130706431 192.168.1.1 7001 typ host", want: dropPolicy},
		{name: "CGNAT", cand: "candidate:1 1 udp 2130706431 100.64.0.1 7001 typ host", want: dropPolicy},
		{name: "multicast", cand: "candidate:1 1 udp 2130706431 224.0.0.251 5353 typ host", want: dropPolicy},
		{name: "broadcast", cand: "candidate:1 1 udp 2130706431 255.255.255.255 7001 typ host", want: dropPolicy},
		{name: "unspecified", cand: "candidate:1 1 udp 2130706431 0.0.0.0 7001 typ host", want: dropPolicy},
		{name: "private srflx", cand: "candidate:2 1 udp 1694498815 10.0.0.1 50000 typ srflx raddr 0.0.0.0 rport 0", want: dropPolicy},
		{name: "private relay", cand: "candidate:3 1 udp 16777215 10.0.0.1 61000 typ relay raddr 203.0.113.9 rport 50000", want: dropPolicy},
		{name: "ipv6 loopback", cand: "candidate:1 1 udp 2130706431 ::1 7001 typ host", want: dropPolicy},
		{name: "ipv6 link-local with zone", cand: "candidate:1 1 udp 2130706431 fe80::1%eth0 7001 typ host", want: dropPolicy},
		{name: "ipv4-mapped loopback", cand: "candidate:1 1 udp 2130706431 ::ffff:127.0.0.2 7001 typ host", want: dropPolicy},
		{name: "ipv4-mapped private", cand: "candidate:1 1 udp 2130706431 ::ffff:10.0.0.1 7001 typ host", want: dropPolicy},
		{name: "own public address", cand: "candidate:1 1 udp 2130706431 198.51.100.1 7001 typ host", want: dropOwn},
		{name: "own address, mapped", cand: "candidate:1 1 udp 2130706431 ::ffff:198.51.100.1 3478 typ host", want: dropOwn},

		{name: "tcp active", cand: "candidate:4 1 tcp 1518280447 203.0.113.9 9 typ host tcptype active", want: dropTCP},
		{name: "tcp passive", cand: "candidate:4 1 tcp 1518280447 203.0.113.9 7001 typ host tcptype passive", want: dropTCP},
		{name: "tcp so", cand: "candidate:4 1 tcp 1518280447 203.0.113.9 7001 typ host tcptype so", want: dropTCP},
		{name: "tcp passive to loopback", cand: "candidate:4 1 TCP 1518280447 127.0.0.1 7001 typ host tcptype passive", want: dropTCP},

		{name: "mdns", cand: "candidate:5 1 udp 2130706431 2b6d2a1c-6f5e-4c1b-9c1a-3f1e2d3c4b5a.local 50000 typ host", want: dropMDNS},
		{name: "an .invalid name pion takes", cand: "candidate:5 1 udp 2130706431 x.invalid 50000 typ host", want: dropHostname},
		// pion v4 refuses other names itself; were it to resolve them
		// one day, the filter would still drop them as hostname.
		{name: "mdns upper case", cand: "candidate:5 1 udp 2130706431 ABC.LOCAL 50000 typ host", want: dropMalformed},
		{name: "hostname", cand: "candidate:5 1 udp 2130706431 localhost 7001 typ srflx raddr 0.0.0.0 rport 0", want: dropMalformed},
		{name: "metadata hostname", cand: "candidate:5 1 udp 2130706431 metadata.google.internal 80 typ relay raddr 0.0.0.0 rport 0", want: dropMalformed},

		{name: "low port", cand: "candidate:1 1 udp 2130706431 203.0.113.9 53 typ host", want: dropPort},

		{name: "garbage", cand: "candidate:garbage", want: dropMalformed},
		{name: "empty", cand: "", want: dropMalformed},
		{name: "unknown type", cand: "candidate:1 1 udp 2130706431 203.0.113.9 50000 typ bogus", want: dropMalformed},
		{name: "bad tcptype", cand: "candidate:1 1 tcp 2130706431 203.0.113.9 50000 typ host tcptype sideways", want: dropMalformed},

		{name: "allowed_peer_cidrs reopens 10/8", cand: "candidate:1 1 udp 2130706431 10.1.2.3 7001 typ host", allowed: []string{"10.0.0.0/8"}, want: ""},
		{name: "allowed_peer_cidrs never reopens the node", cand: "candidate:1 1 udp 2130706431 127.0.0.1 7001 typ host", allowed: []string{"127.0.0.0/8"}, want: dropOwn},
		{name: "denied_peer_cidrs", cand: "candidate:1 1 udp 2130706431 203.0.113.9 50000 typ host", denied: []string{"203.0.113.0/24"}, want: dropPolicy},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := testFilter(t, tc.allowed, tc.denied)
			if got := f.checkCandidate(tc.cand); got != tc.want {
				t.Fatalf("checkCandidate(%q) = %q, want %q", tc.cand, got, tc.want)
			}
		})
	}
}

// TestPublicOnlyDefault: without a PeerFilter the SFU allows public
// addresses only.
func TestPublicOnlyDefault(t *testing.T) {
	for a, want := range map[string]bool{
		"203.0.113.9": true, "8.8.8.8": true, "2001:4860::1": true,
		"127.0.0.1": false, "10.0.0.1": false, "192.168.0.1": false, "172.16.0.1": false, "169.254.169.254": false,
		"::1": false, "fe80::1": false, "fc00::1": false, "224.0.0.1": false, "0.0.0.0": false, "::ffff:10.0.0.1": false,
	} {
		if got := (publicOnly{}).AllowedAddr(netip.MustParseAddr(a)); got != want {
			t.Errorf("publicOnly(%s) = %v, want %v", a, got, want)
		}
	}
}

// answerSDP is an answer with the given candidate lines in its first
// media section (and one at session level).
func answerSDP(cands ...string) string {
	var b strings.Builder
	b.WriteString("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n")
	b.WriteString("a=candidate:9 1 udp 2130706431 10.9.9.9 7001 typ host\r\n")
	for i, mid := range []string{"0", "1"} {
		b.WriteString("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:" + mid + "\r\n")
		b.WriteString("a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\na=rtpmap:111 opus/48000/2\r\n")
		if i == 0 {
			for _, c := range cands {
				b.WriteString("a=" + c + "\r\n")
			}
		}
		b.WriteString("a=end-of-candidates\r\n")
	}
	return b.String()
}

func candidatesIn(t testing.TB, s string) []string {
	t.Helper()
	var d sdp.SessionDescription
	if err := d.UnmarshalString(s); err != nil {
		t.Fatalf("filtered SDP does not parse: %v\n%s", err, s)
	}
	var out []string
	for _, a := range d.Attributes {
		if a.IsICECandidate() {
			out = append(out, a.Value)
		}
	}
	for _, m := range d.MediaDescriptions {
		for _, a := range m.Attributes {
			if a.IsICECandidate() {
				out = append(out, a.Value)
			}
		}
	}
	return out
}

// TestFilterSDP: the refused candidate lines leave the answer, counted by
// reason; the rest of it is kept; beyond the cap candidates are dropped.
func TestFilterSDP(t *testing.T) {
	f := testFilter(t, nil, nil)
	var cands []string
	for i := range 40 {
		cands = append(cands, fmt.Sprintf("candidate:%d 1 udp 2130706431 203.0.113.%d 50000 typ host", i, i+1))
	}
	cands = append(cands,
		"candidate:100 1 udp 2130706431 127.0.0.1 7001 typ host",
		"candidate:101 1 tcp 1518280447 203.0.113.9 9 typ host tcptype active",
		"candidate:102 1 udp 2130706431 x.local 7001 typ host",
	)
	admitted := 0
	drops := map[string]int{}
	out, err := f.filterSDP(answerSDP(cands...), func() bool {
		if admitted >= maxCandidatesPerLeg {
			return false
		}
		admitted++
		return true
	}, func(r string) { drops[r]++ })
	if err != nil {
		t.Fatal(err)
	}
	kept := candidatesIn(t, out)
	if len(kept) != maxCandidatesPerLeg {
		t.Fatalf("kept %d candidates, want %d: %v", len(kept), maxCandidatesPerLeg, kept)
	}
	for _, c := range kept {
		if f.checkCandidate(c) != "" {
			t.Fatalf("kept a refused candidate %q", c)
		}
	}
	want := map[string]int{dropCap: 40 - maxCandidatesPerLeg, dropPolicy: 1, dropOwn: 1, dropTCP: 1, dropMDNS: 1}
	if fmt.Sprint(drops) != fmt.Sprint(want) {
		t.Fatalf("drops = %v, want %v", drops, want)
	}
	for _, keep := range []string{"a=ice-ufrag:abcd", "a=mid:1", "a=end-of-candidates", "a=group:BUNDLE 0 1", "a=rtpmap:111 opus/48000/2"} {
		if !strings.Contains(out, keep) {
			t.Errorf("filtered SDP lost %q", keep)
		}
	}
	if _, err := f.filterSDP("not an sdp", func() bool { return true }, func(string) {}); err == nil {
		t.Fatal("a malformed answer passed")
	}
}

// TestCandidateCapAndMetric: a client trickling 380 candidates has at
// most maxCandidatesPerLeg of them reach pion; refused ones never make an
// error; every drop is counted by reason.
func TestCandidateCapAndMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := New(Options{ListenIP: "127.0.0.1", Logger: discard(), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	room, err := s.Open("flood")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(room.Close)
	if err := room.Start(func(int, Signal) {}); err != nil {
		t.Fatal(err)
	}
	mid := "0"
	for i := range 380 {
		c := webrtc.ICECandidateInit{SDPMid: &mid, Candidate: fmt.Sprintf("candidate:%d 1 udp 2130706431 203.0.%d.%d 50000 typ host", i, 113+i/250, i%250+1)}
		if err := room.Candidate(0, &c); err != nil {
			t.Fatalf("candidate %d: %v", i, err)
		}
	}
	for _, c := range []string{
		"candidate:1 1 udp 2130706431 127.0.0.1 7001 typ host",
		"candidate:1 1 udp 2130706431 169.254.169.254 80 typ host",
		"candidate:1 1 tcp 1518280447 127.0.0.1 7001 typ host tcptype passive",
		"candidate:1 1 udp 2130706431 y.local 7001 typ host",
		"candidate:1 1 udp 2130706431 localhost 7001 typ host",
		"candidate:1 1 udp 2130706431 z.invalid 7001 typ host",
		"nonsense",
	} {
		if err := room.Candidate(1, &webrtc.ICECandidateInit{SDPMid: &mid, Candidate: c}); err != nil {
			t.Fatalf("a dropped candidate made an error: %v", err)
		}
	}
	l := room.legs[0]
	l.candMu.Lock()
	pending, admitted := len(l.pending), l.admitted
	l.candMu.Unlock()
	if pending != maxCandidatesPerLeg || admitted != maxCandidatesPerLeg {
		t.Fatalf("pending %d, admitted %d; want %d", pending, admitted, maxCandidatesPerLeg)
	}
	got := map[string]float64{}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range families {
		if fam.GetName() != "duet_sfu_candidates_dropped_total" {
			continue
		}
		for _, m := range fam.GetMetric() {
			got[labelValue(m, "reason")] = m.GetCounter().GetValue()
		}
	}
	want := map[string]float64{dropCap: 380 - maxCandidatesPerLeg, dropOwn: 1, dropPolicy: 1, dropTCP: 1, dropMDNS: 1, dropHostname: 1, dropMalformed: 2, dropPort: 0}
	if len(got) != len(dropReasons) || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("duet_sfu_candidates_dropped_total = %v, want %v", got, want)
	}
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// FuzzCandidateFilter: whatever a client sends as a candidate, the filter
// never panics, and what it lets through is a UDP candidate pion parses,
// naming a policy-allowed address that is not the node's, on a port of
// 1024 or above. The same holds for the line inside an answer.
func FuzzCandidateFilter(f *testing.F) {
	for _, seed := range []string{
		"candidate:1 1 udp 2130706431 203.0.113.9 50000 typ host",
		"candidate:1 1 udp 2130706431 127.0.0.1 7001 typ host",
		"candidate:4 1 tcp 1518280447 203.0.113.9 9 typ host tcptype active",
		"candidate:5 1 udp 2130706431 abc.local 50000 typ host",
		"candidate:1 1 udp 2130706431 ::ffff:10.0.0.1 7001 typ host",
		"candidate:2 1 udp 1694498815 203.0.113.9 50000 typ srflx raddr 192.168.1.2 rport 50000",
	} {
		f.Add(seed)
	}
	filter := testFilter(f, nil, nil)
	f.Fuzz(func(t *testing.T, raw string) {
		if filter.checkCandidate(raw) == "" {
			c, err := ice.UnmarshalCandidate(raw)
			if err != nil {
				t.Fatalf("passed %q, which pion cannot parse: %v", raw, err)
			}
			a, err := netip.ParseAddr(c.Address())
			if err != nil {
				t.Fatalf("passed %q naming no address", raw)
			}
			a = a.Unmap().WithZone("")
			if c.NetworkType().IsTCP() || !filter.peers.AllowedAddr(a) || c.Port() < 1024 {
				t.Fatalf("passed %q", raw)
			}
			if _, own := filter.own[a]; own {
				t.Fatalf("passed %q naming the node", raw)
			}
		}
		if strings.ContainsAny(raw, "\r\n") {
			return // not one attribute line
		}
		out, err := filter.filterSDP(answerSDP(raw), func() bool { return true }, func(string) {})
		if err != nil {
			return
		}
		for _, c := range candidatesIn(t, out) {
			if filter.checkCandidate(c) != "" {
				t.Fatalf("answer kept a refused candidate %q (from %q)", c, raw)
			}
		}
	})
}
