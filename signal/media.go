package signal

import (
	"encoding/json"

	"github.com/duetchat/duet/wire"
)

// MediaServer is the node's SFU as the hub sees it.
type MediaServer interface {
	// Open prepares room on the SFU: one connection per side, no offer
	// yet (Start makes them).
	Open(room string) (MediaRoom, error)
}

// MediaRoom is one room on the SFU. Side 0 is the offerer of the room.
type MediaRoom interface {
	// Start makes the node's offers and trickles its candidates to send,
	// from the SFU's own goroutines.
	Start(send func(side int, sig MediaSignal)) error
	Answer(side int, sdp string) error
	Candidate(side int, c *wire.ICECandidate) error // nil: end of candidates
	Close()
}

// MediaSignal is one thing the SFU tells one side: an offer, a candidate,
// or the end of its candidates.
type MediaSignal struct {
	SDP       string
	Candidate *wire.ICECandidate
	End       bool
}

// fallback moves r onto the SFU: both strangers hear `media` `sfu` (and
// drop their P2P connection), then each gets the node's offer (h.mu held).
func (h *Hub) fallback(r *room) *wire.Error {
	switch {
	case r.media == wire.MediaSFU:
		return nil // a second fallback for the same room is ignored
	case r.side[0].remote() != nil:
		// A room spanning two nodes has its SFU on the offerer's node, so
		// both nodes agree on one even if both strangers ask at once.
		h.opt.Bus.Publish(r.side[0].node(), Envelope{Type: envFallback, Room: r.code, From: r.side[1].id})
		return nil
	case h.opt.SFU == nil:
		return wire.Errorf(wire.CodeUnavailable, "this node has no SFU; the room stays peer to peer")
	}
	r.media = wire.MediaSFU
	if o := r.side[1].remote(); o != nil {
		// First the state, then the frames: same destination, in order.
		h.opt.Bus.Publish(o.name, Envelope{Type: envSFU, Room: r.code, Node: h.opt.Bus.Node()})
	}
	for i, s := range r.side {
		// P2P signals still held for a side are void now.
		r.buf[i], r.bufBytes[i] = nil, 0
		h.send(s, wire.MediaMsg{Type: wire.TypeMedia, Room: r.code, Mode: wire.MediaSFU})
	}
	h.log.Info("room moved to the SFU", "room", r.code)
	h.spawn(func() { h.openSFU(r) })
	return nil
}

// openSFU opens r's SFU room without the hub lock (pion calls back into
// the hub from its own goroutines), then starts its offers.
func (h *Hub) openSFU(r *room) {
	mr, err := h.opt.SFU.Open(r.code)
	h.mu.Lock()
	if err != nil {
		h.log.Error("opening the SFU room failed", "room", r.code, "err", err)
		for _, s := range r.side {
			if s.remote() == nil && s.room == r {
				h.sendErr(s, wire.Errorf(wire.CodeUnavailable, "the node could not move this room to its SFU"), "fallback")
			}
		}
		h.unlock()
		return
	}
	if h.rooms[r.code] != r || r.media != wire.MediaSFU {
		h.unlock()
		mr.Close() // the room ended meanwhile
		return
	}
	r.sfu = mr
	h.unlock()
	code := r.code
	if err := mr.Start(func(side int, sig MediaSignal) { h.sfuSignal(code, side, sig) }); err != nil {
		h.log.Error("starting the SFU room failed", "room", code, "err", err)
	}
}

// sfuSignal delivers one SFU signal to a side, held until its `ready`
// like any signal.
func (h *Hub) sfuSignal(code string, side int, sig MediaSignal) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	r := h.rooms[code]
	if r == nil || r.sfu == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var frame []byte
	if sig.SDP != "" {
		frame = wire.Encode(wire.SDPMsg{Type: wire.TypeOffer, Room: code, SDP: sig.SDP, Leg: wire.LegSFU})
	} else {
		frame = wire.Encode(wire.CandidateMsg{Type: wire.TypeCandidate, Room: code, Candidate: sig.Candidate, Leg: wire.LegSFU})
	}
	h.relay(r.side[side], outFrame{b: frame, held: true})
}

// mediaJob is a client's answer or candidate for the SFU, applied after
// the hub lock is released.
type mediaJob struct {
	s    *session
	r    MediaRoom
	side int
	kind string
	sdp  string
	cand *wire.ICECandidate
}

// apply hands the job's answer or candidate to the SFU room.
func (j mediaJob) apply() error {
	if j.kind == wire.TypeAnswer {
		return j.r.Answer(j.side, j.sdp)
	}
	return j.r.Candidate(j.side, j.cand)
}

// onSFUSignal takes a client's `leg: "sfu"` answer or candidate (h.mu held).
func (h *Hub) onSFUSignal(s *session, r *room, m *wire.Inbound, cand *wire.ICECandidate) *wire.Error {
	if m.Type == wire.TypeOffer {
		return wire.Errorf(wire.CodeBadRequest, "the node makes every SFU offer; answer it instead")
	}
	if r.sfu == nil && r.sfuNode != "" {
		// The room's SFU is on the other node: the signal goes there.
		var frame []byte
		if m.Type == wire.TypeAnswer {
			frame = wire.Encode(map[string]string{"sdp": *m.SDP})
		} else {
			frame = wire.Encode(cand)
		}
		h.opt.Bus.Publish(r.sfuNode, Envelope{Type: envSFUSig, Room: r.code, From: s.id, Ref: m.Type, Frame: frame})
		return nil
	}
	if r.sfu == nil {
		return wire.Errorf(wire.CodeWrongState, "%s: this room is not on the SFU", m.Type)
	}
	job := mediaJob{s: s, r: r.sfu, side: r.index(s), kind: m.Type, cand: cand}
	if m.Type == wire.TypeAnswer {
		job.sdp = *m.SDP
	}
	h.media = append(h.media, job)
	return nil
}

// runMedia applies the deferred SFU jobs; a refusal goes back to the
// client as bad_request.
func (h *Hub) runMedia(jobs []mediaJob) {
	for _, j := range jobs {
		if err := j.apply(); err != nil {
			h.mu.Lock()
			if j.s.c != nil {
				h.sendErr(j.s, wire.Errorf(wire.CodeBadRequest, "the SFU refused this %s: %v", j.kind, err), j.kind)
			}
			h.unlock()
		}
	}
}

// closeSFU ends r's SFU room, if any, off the lock (h.mu held).
func (h *Hub) closeSFU(r *room) {
	if mr := r.sfu; mr != nil {
		r.sfu = nil
		h.spawn(mr.Close)
	}
}

// startSFUAtMatch opens the SFU room right away for sfu.mode: always;
// offers wait for each side's `ready` (h.mu held).
func (h *Hub) startSFUAtMatch(r *room) {
	if !h.opt.SFUAlways || h.opt.SFU == nil || r.mode != "video" {
		return
	}
	r.media = wire.MediaSFU
	h.spawn(func() { h.openSFU(r) })
}

// restartSFU gives an SFU room fresh connections after one side resumed
// on a new socket (its browser built a new connection, with new DTLS
// keys): both sides hear `media` `sfu` again and get new offers (h.mu held).
func (h *Hub) restartSFU(r *room) {
	if r.media != wire.MediaSFU || r.side[0].remote() != nil || r.side[1].remote() != nil {
		return
	}
	old := r.sfu
	r.sfu = nil
	for i, s := range r.side {
		r.buf[i], r.bufBytes[i] = nil, 0
		h.send(s, wire.MediaMsg{Type: wire.TypeMedia, Room: r.code, Mode: wire.MediaSFU})
	}
	h.spawn(func() {
		if old != nil {
			old.Close() // first: the SFU knows a room code once
		}
		h.openSFU(r)
	})
}

// onRemoteSFUSignal applies the answer or candidate of a stranger on
// another node to this node's SFU room (h.mu held; the SFU call itself
// runs after the lock, in arrival order, on its own goroutine).
func (h *Hub) onRemoteSFUSignal(env Envelope) {
	r := h.rooms[env.Room]
	if r == nil || r.sfu == nil {
		return
	}
	p := r.sideByID(env.From)
	if p == nil || p.remote() == nil {
		return
	}
	job := mediaJob{r: r.sfu, side: r.index(p), kind: env.Ref}
	switch env.Ref {
	case wire.TypeAnswer:
		var a struct {
			SDP string `json:"sdp"`
		}
		if json.Unmarshal(env.Frame, &a) != nil {
			return
		}
		job.sdp = a.SDP
	case wire.TypeCandidate:
		if string(env.Frame) != "null" {
			var c wire.ICECandidate
			if json.Unmarshal(env.Frame, &c) != nil {
				return
			}
			job.cand = &c
		}
	default:
		return
	}
	h.remoteMedia = append(h.remoteMedia, job)
	if !h.remoteMediaRunning {
		h.remoteMediaRunning = true
		h.spawn(h.drainRemoteMedia)
	}
}

// drainRemoteMedia applies queued remote SFU jobs one at a time, in order.
func (h *Hub) drainRemoteMedia() {
	for {
		h.mu.Lock()
		if len(h.remoteMedia) == 0 {
			h.remoteMediaRunning = false
			h.unlock()
			return
		}
		j := h.remoteMedia[0]
		h.remoteMedia = h.remoteMedia[1:]
		h.unlock()
		if err := j.apply(); err != nil {
			h.log.Warn("the SFU refused a signal from another node", "kind", j.kind, "err", err)
		}
	}
}
