package turn

// Flow is one direction of a room as the relay saw it.
type Flow struct {
	Bytes      uint64
	Packets    uint64
	BitrateBPS float64 // over the last few seconds
}

// RoomFigures is what the relay carried for a room.
type RoomFigures struct {
	// Relaying is true while media, not just ICE checks, goes through the
	// relay: browsers allocate relay candidates even when a direct pair
	// wins, so an allocation alone does not make a room "turn".
	Relaying   bool
	AToB, BToA Flow
}

// relayingPackets is the packet rate above which a room counts as
// relayed. Consent checks on standby pairs are a few packets a second;
// audio alone is about fifty.
const (
	relayingPPS     = 10
	relayingPackets = 100 // before the first rate window exists
)

// Room reports the relayed traffic of room, with a and b the two
// strangers' session ids. a->b is what a sent through its relay or b
// received through its relay, whichever is larger: with both strangers
// relaying each packet crosses the relay twice, and counting it once is
// the honest figure.
func (s *Server) Room(room, a, b string) (RoomFigures, bool) {
	return s.acc.room(room, a, b)
}

func (ac *accounting) room(room, a, b string) (RoomFigures, bool) {
	ac.mu.Lock()
	defer ac.mu.Unlock()
	sessions := ac.rooms[room]
	if sessions == nil {
		return RoomFigures{}, false
	}
	sa, sb := sessions[a], sessions[b]
	if sa == nil && sb == nil {
		return RoomFigures{}, false
	}
	ab := flowBetween(sa, sb)
	ba := flowBetween(sb, sa)
	f := RoomFigures{AToB: ab.Flow, BToA: ba.Flow}
	if ab.windowed || ba.windowed {
		f.Relaying = ab.pps >= relayingPPS || ba.pps >= relayingPPS
	} else {
		f.Relaying = ab.Packets >= relayingPackets || ba.Packets >= relayingPackets
	}
	return f, true
}

type flowFigures struct {
	Flow
	pps      float64
	windowed bool
}

// flowBetween is the flow from sender to receiver; either may be nil
// when that stranger does not relay.
func flowBetween(sender, receiver *sessionAcc) flowFigures {
	var f flowFigures
	if sender != nil {
		to, _ := sender.totals()
		f.Bytes, f.Packets = to.Bytes, to.Packets
		if old, cur, ok := sender.window(); ok {
			f.take(cur.to, old.to, cur.at.Sub(old.at).Seconds())
		}
	}
	if receiver != nil {
		_, from := receiver.totals()
		f.Bytes, f.Packets = max(f.Bytes, from.Bytes), max(f.Packets, from.Packets)
		if old, cur, ok := receiver.window(); ok {
			f.take(cur.from, old.from, cur.at.Sub(old.at).Seconds())
		}
	}
	return f
}

func (f *flowFigures) take(cur, old Totals, secs float64) {
	if secs <= 0 {
		return
	}
	f.windowed = true
	f.BitrateBPS = max(f.BitrateBPS, float64(cur.Bytes-old.Bytes)*8/secs)
	f.pps = max(f.pps, float64(cur.Packets-old.Packets)/secs)
}
