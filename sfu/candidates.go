package sfu

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/pion/ice/v4"
	"github.com/pion/sdp/v3"
)

// PeerFilter decides which remote addresses a client's candidate may name.
// The node passes the TURN relay's peer policy (turn.PeerPolicy), so the
// SFU and the relay refuse the same ranges.
type PeerFilter interface {
	AllowedAddr(netip.Addr) bool
}

// publicOnly is the PeerFilter when none is given: global unicast
// addresses outside the private ranges.
type publicOnly struct{}

func (publicOnly) AllowedAddr(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsGlobalUnicast() && !a.IsPrivate()
}

// maxCandidatesPerLeg caps the remote candidates one client gets to hand
// pion (from its answer and trickled together). A browser sends a handful;
// what is beyond the cap is dropped and counted.
const maxCandidatesPerLeg = 32

// Why a remote candidate was dropped: the reason label of
// duet_sfu_candidates_dropped_total.
const (
	dropMalformed = "malformed"   // pion could not parse it either
	dropTCP       = "tcp"         // any ICE-TCP candidate (see checkCandidate)
	dropMDNS      = "mdns"        // a .local name: never resolved
	dropHostname  = "hostname"    // any other name instead of an address
	dropOwn       = "own_address" // one of the node's own addresses
	dropPolicy    = "policy"      // refused by the peer policy
	dropPort      = "port"        // a port below 1024
	dropCap       = "cap"         // over maxCandidatesPerLeg
)

var dropReasons = []string{dropMalformed, dropTCP, dropMDNS, dropHostname, dropOwn, dropPolicy, dropPort, dropCap}

// candidateFilter judges the remote candidates a client names, before
// pion sees them. The SFU runs ICE-lite and never starts a connectivity
// check, so it has no use for remote candidates at all: a client's
// checks reach it and pion learns the client's address from them (a
// peer-reflexive candidate). The filter is defence in depth, for the day
// something in pion does contact a remote candidate: then only a public
// address that is not the node's own may be one.
type candidateFilter struct {
	peers PeerFilter
	own   map[netip.Addr]struct{}
}

// checkCandidate returns "" when the candidate (an a=candidate value or a
// trickled candidate string, "candidate:" prefix optional) may reach pion,
// or the reason it may not.
//
// Every TCP candidate is dropped. A lite agent with passive ICE-TCP only
// accepts connections: a client's "tcptype active" candidate (the usual
// one, port 9) is ignored by pion anyway, and "passive" or "so" would ask
// the node to connect out, which it never does (active ICE-TCP is off).
func (f *candidateFilter) checkCandidate(raw string) string {
	c, err := ice.UnmarshalCandidate(raw)
	if err != nil {
		return dropMalformed
	}
	if c.NetworkType().IsTCP() {
		return dropTCP
	}
	addr, err := netip.ParseAddr(c.Address())
	if err != nil {
		if name := strings.ToLower(strings.TrimSuffix(c.Address(), ".")); strings.HasSuffix(name, ".local") {
			return dropMDNS
		}
		return dropHostname
	}
	addr = addr.Unmap().WithZone("")
	if _, mine := f.own[addr]; mine {
		return dropOwn
	}
	if !f.peers.AllowedAddr(addr) {
		return dropPolicy
	}
	if c.Port() < 1024 {
		return dropPort
	}
	return ""
}

// errSDP is an answer SDP the filter cannot parse (pion could not either).
var errSDP = errors.New("sfu: malformed answer")

// filterSDP removes from an answer every a=candidate line the filter
// refuses, at session and media level; admit counts each one it keeps
// (and may refuse it: the cap) and drop each one it removes.
func (f *candidateFilter) filterSDP(s string, admit func() bool, drop func(reason string)) (string, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(s); err != nil {
		return "", fmt.Errorf("%w: %v", errSDP, err)
	}
	keep := func(attrs []sdp.Attribute) []sdp.Attribute {
		out := attrs[:0]
		for _, a := range attrs {
			if a.IsICECandidate() {
				if reason := f.checkCandidate(a.Value); reason != "" {
					drop(reason)
					continue
				}
				if !admit() {
					drop(dropCap)
					continue
				}
			}
			out = append(out, a)
		}
		return out
	}
	d.Attributes = keep(d.Attributes)
	for _, m := range d.MediaDescriptions {
		m.Attributes = keep(m.Attributes)
	}
	b, err := d.Marshal()
	if err != nil {
		return "", fmt.Errorf("%w: %v", errSDP, err)
	}
	return string(b), nil
}
