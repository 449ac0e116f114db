package signal

import (
	"context"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/duetchat/duet/matcher"
	"github.com/duetchat/duet/moderation"
	"github.com/duetchat/duet/transport"
	"github.com/duetchat/duet/wire"
)

// handleFrame processes one frame from s's socket c. Binary frames are
// refused, but only after the rate limits, so they cannot buy free errors.
func (h *Hub) handleFrame(s *session, c *transport.Conn, text bool, frame []byte) {
	ctx := context.Background()
	now := h.opt.Now()
	var msg *wire.Inbound
	derr := errBinary
	if text {
		msg, derr = wire.Decode(frame)
	}

	if derr == nil && roomOnly(msg) && h.inRoom(ctx, s, c, msg, now) {
		return
	}
	var (
		jobs    []joinJob
		media   []mediaJob
		reports []reportJob
	)
	h.exclusive(func() {
		if s.c != c {
			return // a late frame from a socket a resume replaced
		}
		h.deferring = true
		h.handleLocked(ctx, s, msg, derr, now)
		h.deferring = false
		jobs, media, reports = h.joins, h.media, h.reports
		h.joins, h.media, h.reports = nil, nil, nil
		h.persist(s)
	})
	if len(reports) > 0 || len(jobs) > 0 {
		// Off the socket's reader too: its next frame is read meanwhile.
		h.store.do(s.id, func() {
			h.runReports(reports)
			h.runJoins(ctx, jobs)
		})
	}
	h.runMedia(media)
}

// roomOnly: m touches nothing but its sender's room (and the limits), so
// it may take the room's lock instead of the hub's.
func roomOnly(m *wire.Inbound) bool {
	switch m.Type {
	case wire.TypeChat, wire.TypeTyping, wire.TypeReady:
		return true
	case wire.TypeOffer, wire.TypeAnswer, wire.TypeCandidate:
		return m.Leg != wire.LegSFU // SFU signals are applied after the hub's lock
	}
	return false
}

// inRoom handles a roomOnly message with the hub only read-locked and the
// sender's room locked: the messages of different rooms, the bulk of a
// node's traffic, do not wait for each other. False: s is in no room, and
// the message takes the hub's lock like any other (it answers the error).
func (h *Hub) inRoom(ctx context.Context, s *session, c *transport.Conn, msg *wire.Inbound, now time.Time) bool {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if s.c != c {
		return true // a late frame from a socket a resume replaced
	}
	r := s.room
	if r == nil || s.state != stateRoom {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	h.handleLocked(ctx, s, msg, nil, now)
	return true
}

func (h *Hub) handleLocked(ctx context.Context, s *session, msg *wire.Inbound, derr *wire.Error, now time.Time) {
	ref := ""
	if msg != nil && (derr == nil || wire.IsClientType(msg.Type)) {
		ref = msg.Type
	}
	joining := ref == wire.TypeQueue || ref == wire.TypeNext
	if !h.ips.AllowMessage(s.ip, now) || !s.limits.allow(now, classOf(ref)) ||
		joining && (!s.limits.joins.AllowN(now, 1) || !h.ips.AllowJoin(s.ip, now)) {
		h.m.rateLimited.Inc()
		if s.limits.notice.AllowN(now, 1) {
			h.sendErr(s, errRateLimited, ref)
		}
		return
	}
	if derr != nil {
		h.sendErr(s, derr, ref)
		return
	}
	h.m.message(msg.Type)
	if e := h.dispatch(ctx, s, msg); e != nil {
		h.sendErr(s, e, msg.Type)
	}
}

var (
	errRateLimited = wire.Errorf(wire.CodeRateLimited, "slow down: too many messages")
	errBinary      = wire.Errorf(wire.CodeBadRequest, "binary frames are not accepted; send JSON text frames")
)

func (h *Hub) dispatch(ctx context.Context, s *session, m *wire.Inbound) *wire.Error {
	switch m.Type {
	case wire.TypeQueue:
		return h.onQueue(ctx, s, m)
	case wire.TypeCancel:
		if s.state != stateWaiting {
			return wire.Errorf(wire.CodeWrongState, "cancel: you are not waiting")
		}
		h.unqueue(ctx, s)
		h.send(s, wire.ModeMsg{Type: wire.TypeIdle})
	case wire.TypeReady:
		r, e := h.roomOf(s, m)
		if e != nil {
			return e
		}
		i := r.index(s)
		r.ready[i] = true
		h.flushFrames(s, r.buf[i])
		r.buf[i], r.bufBytes[i] = nil, 0
	case wire.TypeOffer, wire.TypeAnswer, wire.TypeCandidate:
		return h.onSignal(s, m)
	case wire.TypeChat:
		return h.onChat(s, m)
	case wire.TypeTyping:
		r, e := h.roomOf(s, m)
		if e != nil {
			return e
		}
		if m.On == nil {
			return wire.Errorf(wire.CodeBadRequest, "typing needs a boolean \"on\"")
		}
		h.send(r.other(s), wire.TypingMsg{Type: wire.TypeTyping, Room: r.code, On: *m.On})
	case wire.TypeNext:
		if e := h.takeBlocks(s, m); e != nil {
			return e
		}
		switch s.state {
		case stateWaiting:
			h.send(s, wire.ModeMsg{Type: wire.TypeQueued, Mode: s.prefs.mode})
		case stateRoom:
			h.endRoom(s, wire.ReasonNext)
			h.askJoin(ctx, s, "next", m.Pow)
		default:
			h.askJoin(ctx, s, "next", m.Pow)
		}
	case wire.TypeLeave:
		h.unqueue(ctx, s)
		h.endRoom(s, wire.ReasonLeave)
		h.send(s, wire.ModeMsg{Type: wire.TypeIdle})
	case wire.TypeReport:
		return h.onReport(ctx, s, m)
	case wire.TypeShield:
		return h.onShield(s, m)
	case wire.TypeFace:
		return h.onFace(s, m)
	case wire.TypeFallback:
		r, e := h.roomOf(s, m)
		if e != nil {
			return e
		}
		if r.mode != matcher.ModeVideo {
			return wire.Errorf(wire.CodeWrongState, "fallback: text rooms carry no media")
		}
		return h.fallback(r)
	default:
		return wire.Errorf(wire.CodeUnknownType, "unknown message type %q", truncate(m.Type, 40))
	}
	return nil
}

// roomOf checks that s is in a room and that the message names that room.
func (h *Hub) roomOf(s *session, m *wire.Inbound) (*room, *wire.Error) {
	if s.state != stateRoom || s.room == nil {
		return nil, wire.Errorf(wire.CodeWrongState, "%s: you are not in a room", m.Type)
	}
	if m.Room == nil {
		return nil, wire.Errorf(wire.CodeBadRequest, "%s needs \"room\"", m.Type)
	}
	if *m.Room != s.room.code {
		return nil, wire.Errorf(wire.CodeNotInRoom, "that room is not yours")
	}
	return s.room, nil
}

func (h *Hub) onQueue(ctx context.Context, s *session, m *wire.Inbound) *wire.Error {
	if s.state != stateIdle {
		return wire.Errorf(wire.CodeWrongState, "queue: you are already waiting or in a room; send next or leave")
	}
	if !matcher.ValidMode(m.Mode) {
		return wire.Errorf(wire.CodeBadRequest, "mode must be \"video\" or \"text\"")
	}
	l := h.opt.Limits
	if len(m.Interests) > l.MaxInterests {
		return wire.Errorf(wire.CodeTooLarge, "at most %d interests", l.MaxInterests)
	}
	for _, in := range m.Interests {
		if utf8.RuneCountInString(in) > l.MaxInterestChars {
			return wire.Errorf(wire.CodeTooLarge, "an interest may have at most %d characters", l.MaxInterestChars)
		}
	}
	lang := strings.TrimSpace(m.Lang)
	if len(lang) > 35 { // the longest sensible BCP 47 tag
		return wire.Errorf(wire.CodeBadRequest, "lang is not a language tag")
	}
	if h.opt.Signal.FaceCheck && m.Mode == matcher.ModeVideo {
		h.m.faceChecks.WithLabelValues(faceResult(m.Face)).Inc()
	}
	if e := h.takeBlocks(s, m); e != nil {
		return e
	}
	if s.prefs != nil && s.prefs.mode != m.Mode {
		s.mixedModes = true
	}
	s.prefs = &prefs{mode: m.Mode, interests: cleanInterests(m.Interests), lang: lang}
	h.askJoin(ctx, s, "queue", m.Pow)
	return nil
}

// faceResult labels what a client's own face check said: the node never
// sees the camera, only this answer (absent: the browser has no detector).
func faceResult(face *bool) string {
	switch {
	case face == nil:
		return "no_detector"
	case *face:
		return "face"
	}
	return "no_face"
}

// cleanInterests strips what SanitizeChat strips, then normalises.
func cleanInterests(in []string) []string {
	out := make([]string, 0, len(in))
	for _, s := range in {
		out = append(out, wire.SanitizeChat(s))
	}
	return matcher.NormalizeInterests(out)
}

func (h *Hub) onSignal(s *session, m *wire.Inbound) *wire.Error {
	r, e := h.roomOf(s, m)
	if e != nil {
		return e
	}
	if r.mode != matcher.ModeVideo {
		return wire.Errorf(wire.CodeWrongState, "%s: text rooms carry no media", m.Type)
	}
	var frame []byte
	var cand *wire.ICECandidate
	if m.Type == wire.TypeCandidate {
		if len(m.Candidate) > h.opt.Limits.MaxSDPBytes {
			return wire.Errorf(wire.CodeTooLarge, "candidate larger than %d bytes", h.opt.Limits.MaxSDPBytes)
		}
		c, e := wire.ParseCandidate(m.Candidate)
		if e != nil {
			return e
		}
		cand = c
		frame = wire.Encode(wire.CandidateMsg{Type: wire.TypeCandidate, Room: r.code, Candidate: cand})
	} else {
		if m.SDP == nil || *m.SDP == "" {
			return wire.Errorf(wire.CodeBadRequest, "%s needs a non-empty \"sdp\" string", m.Type)
		}
		if len(*m.SDP) > h.opt.Limits.MaxSDPBytes {
			return wire.Errorf(wire.CodeTooLarge, "sdp larger than %d bytes", h.opt.Limits.MaxSDPBytes)
		}
		frame = wire.Encode(wire.SDPMsg{Type: m.Type, Room: r.code, SDP: *m.SDP})
	}
	if m.Leg == wire.LegSFU {
		return h.onSFUSignal(s, r, m, cand)
	}
	if r.media == wire.MediaSFU {
		// A P2P signal sent before the client heard `media` `sfu`: the
		// P2P connection is gone on both sides, so it goes nowhere.
		return nil
	}
	return h.relay(r.other(s), outFrame{b: frame, held: true, from: s.id, ref: m.Type})
}

func (h *Hub) onChat(s *session, m *wire.Inbound) *wire.Error {
	r, e := h.roomOf(s, m)
	if e != nil {
		return e
	}
	if m.Text == nil {
		return wire.Errorf(wire.CodeBadRequest, "chat needs a \"text\" string")
	}
	text := wire.SanitizeChat(*m.Text)
	if text == "" {
		return wire.Errorf(wire.CodeBadRequest, "chat text is empty")
	}
	if n := utf8.RuneCountInString(text); n > h.opt.Signal.ChatMaxChars {
		return wire.Errorf(wire.CodeTooLarge, "chat text has %d characters; at most %d", n, h.opt.Signal.ChatMaxChars)
	}
	links, e := h.chatLinks(r, text)
	if e != nil {
		return e
	}
	r.chats[r.index(s)]++
	h.send(r.other(s), wire.ChatMsg{Type: wire.TypeChat, Room: r.code, Text: text, At: h.opt.Now().UnixMilli(), Links: links})
	return nil
}

func (h *Hub) onReport(ctx context.Context, s *session, m *wire.Inbound) *wire.Error {
	r, e := h.roomOf(s, m)
	if e != nil {
		return e
	}
	reason, e := h.reportReason(m.Reason)
	if e != nil {
		return e
	}
	other := r.other(s)
	h.reports = append(h.reports, reportJob{
		rep: moderation.Report{
			Room: r.code, Reporter: s.id, Reported: other.id, Reason: reason, At: h.opt.Now(),
			Shield: h.shieldReport(s, r, reason),
		},
		ip: other.ipHash, node: other.node(), reporter: s, room: r,
	})
	return nil // runReports ends the room once the report is recorded
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}
