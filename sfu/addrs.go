package sfu

import "net/netip"

// Addrs are the addresses the SFU planned at start: where its ports bind
// (unspecified: every address), the one local address its candidates are
// gathered from, and the one they advertise. The node's network view
// shows them to operators.
func (s *SFU) Addrs() (bind, gather, advertise netip.Addr) {
	return s.plan.bind, s.plan.gather, s.plan.advertise
}
