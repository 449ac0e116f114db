package signal

import (
	"context"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/duetchat/duet/matcher"
	"github.com/duetchat/duet/moderation"
)

// maxReasonChars bounds a report's reason.
const maxReasonChars = 200

// handleFrame processes one frame from s's socket c. Binary frames are
// refused, but only after the rate limits, so they cannot buy free errors.
func (h *Hub) handleFrame(s *session, c *conn, text bool, frame []byte) {
	ctx := context.Background()
	now := h.opt.Now()
	var msg *inbound
	derr := errBinary
	if text {
		msg, derr = decode(frame)
	}

	h.mu.Lock()
	if s.c != c {
		h.unlock()
		return // a late frame from a socket a resume replaced
	}
	h.deferring = true
	h.handleLocked(ctx, s, msg, derr, now)
	h.deferring = false
	jobs, media, reports := h.joins, h.media, h.reports
	h.joins, h.media, h.reports = nil, nil, nil
	h.persist(s)
	h.unlock()
	if len(reports) > 0 || len(jobs) > 0 {
		// Off the socket's reader too: its next frame is read meanwhile.
		h.store.do(s.id, func() {
			h.runReports(reports)
			h.runJoins(ctx, jobs)
		})
	}
	h.runMedia(media)
}

func (h *Hub) handleLocked(ctx context.Context, s *session, msg *inbound, derr *protoError, now time.Time) {
	ref := ""
	if msg != nil && (derr == nil || knownTypes[msg.Type]) {
		ref = msg.Type
	}
	joining := ref == "queue" || ref == "next"
	if !h.ips.allowMessage(s.ip, now) || !s.limits.allow(now, classOf(ref)) ||
		joining && (!s.limits.joins.AllowN(now, 1) || !h.ips.allowJoin(s.ip, now)) {
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
	errRateLimited = perr(CodeRateLimited, "slow down: too many messages")
	errBinary      = perr(CodeBadRequest, "binary frames are not accepted; send JSON text frames")
)

func (h *Hub) dispatch(ctx context.Context, s *session, m *inbound) *protoError {
	switch m.Type {
	case "queue":
		return h.onQueue(ctx, s, m)
	case "cancel":
		if s.state != stateWaiting {
			return perr(CodeWrongState, "cancel: you are not waiting")
		}
		h.unqueue(ctx, s)
		h.send(s, modeMsg{Type: "idle"})
	case "ready":
		r, e := h.roomOf(s, m)
		if e != nil {
			return e
		}
		i := r.index(s)
		r.ready[i] = true
		h.flushFrames(s, r.buf[i])
		r.buf[i], r.bufBytes[i] = nil, 0
	case "offer", "answer", "candidate":
		return h.onSignal(s, m)
	case "chat":
		return h.onChat(s, m)
	case "typing":
		r, e := h.roomOf(s, m)
		if e != nil {
			return e
		}
		if m.On == nil {
			return perr(CodeBadRequest, "typing needs a boolean \"on\"")
		}
		h.send(r.other(s), typingMsg{Type: "typing", Room: r.code, On: *m.On})
	case "next":
		switch s.state {
		case stateWaiting:
			h.send(s, modeMsg{Type: "queued", Mode: s.prefs.mode})
		case stateRoom:
			h.endRoom(s, ReasonNext)
			h.askJoin(ctx, s, "next")
		default:
			h.askJoin(ctx, s, "next")
		}
	case "leave":
		h.unqueue(ctx, s)
		h.endRoom(s, ReasonLeave)
		h.send(s, modeMsg{Type: "idle"})
	case "report":
		return h.onReport(ctx, s, m)
	case "fallback":
		r, e := h.roomOf(s, m)
		if e != nil {
			return e
		}
		if r.mode != matcher.ModeVideo {
			return perr(CodeWrongState, "fallback: text rooms carry no media")
		}
		return h.fallback(r)
	default:
		return perr(CodeUnknownType, "unknown message type %q", truncate(m.Type, 40))
	}
	return nil
}

// roomOf checks that s is in a room and that the message names that room.
func (h *Hub) roomOf(s *session, m *inbound) (*room, *protoError) {
	if s.state != stateRoom || s.room == nil {
		return nil, perr(CodeWrongState, "%s: you are not in a room", m.Type)
	}
	if m.Room == nil {
		return nil, perr(CodeBadRequest, "%s needs \"room\"", m.Type)
	}
	if *m.Room != s.room.code {
		return nil, perr(CodeNotInRoom, "that room is not yours")
	}
	return s.room, nil
}

func (h *Hub) onQueue(ctx context.Context, s *session, m *inbound) *protoError {
	if s.state != stateIdle {
		return perr(CodeWrongState, "queue: you are already waiting or in a room; send next or leave")
	}
	if !matcher.ValidMode(m.Mode) {
		return perr(CodeBadRequest, "mode must be \"video\" or \"text\"")
	}
	l := h.opt.Limits
	if len(m.Interests) > l.MaxInterests {
		return perr(CodeTooLarge, "at most %d interests", l.MaxInterests)
	}
	for _, in := range m.Interests {
		if utf8.RuneCountInString(in) > l.MaxInterestChars {
			return perr(CodeTooLarge, "an interest may have at most %d characters", l.MaxInterestChars)
		}
	}
	lang := strings.TrimSpace(m.Lang)
	if len(lang) > 35 { // the longest sensible BCP 47 tag
		return perr(CodeBadRequest, "lang is not a language tag")
	}
	if h.opt.Signal.FaceCheck && m.Mode == matcher.ModeVideo {
		h.m.faceChecks.WithLabelValues(faceResult(m.Face)).Inc()
	}
	s.prefs = &prefs{mode: m.Mode, interests: cleanInterests(m.Interests), lang: lang}
	h.askJoin(ctx, s, "queue")
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
		out = append(out, SanitizeChat(s))
	}
	return matcher.NormalizeInterests(out)
}

func (h *Hub) onSignal(s *session, m *inbound) *protoError {
	r, e := h.roomOf(s, m)
	if e != nil {
		return e
	}
	if r.mode != matcher.ModeVideo {
		return perr(CodeWrongState, "%s: text rooms carry no media", m.Type)
	}
	var frame []byte
	var cand *ICECandidate
	if m.Type == "candidate" {
		if len(m.Candidate) > h.opt.Limits.MaxSDPBytes {
			return perr(CodeTooLarge, "candidate larger than %d bytes", h.opt.Limits.MaxSDPBytes)
		}
		c, e := parseCandidate(m.Candidate)
		if e != nil {
			return e
		}
		cand = c
		frame = encode(candidateMsg{Type: "candidate", Room: r.code, Candidate: cand})
	} else {
		if m.SDP == nil || *m.SDP == "" {
			return perr(CodeBadRequest, "%s needs a non-empty \"sdp\" string", m.Type)
		}
		if len(*m.SDP) > h.opt.Limits.MaxSDPBytes {
			return perr(CodeTooLarge, "sdp larger than %d bytes", h.opt.Limits.MaxSDPBytes)
		}
		frame = encode(sdpMsg{Type: m.Type, Room: r.code, SDP: *m.SDP})
	}
	if m.Leg == mediaSFU {
		return h.onSFUSignal(s, r, m, cand)
	}
	if r.media == mediaSFU {
		// A P2P signal sent before the client heard `media` `sfu`: the
		// P2P connection is gone on both sides, so it goes nowhere.
		return nil
	}
	to := r.other(s)
	if to.remote != "" {
		// The stranger's node holds the readiness buffer and its limits.
		h.opt.Bus.Publish(to.remote, Envelope{Type: envSignal, Room: r.code, From: s.id, To: to.id, Frame: frame, Ref: m.Type})
		return nil
	}
	i := r.index(to)
	if r.ready[i] && to.c != nil {
		to.c.send(frame)
		return nil
	}
	l := h.opt.Limits
	if len(r.buf[i]) >= l.MaxBufferedSignals || r.bufBytes[i]+len(frame) > l.MaxBufferedBytes {
		return perr(CodeTooLarge, "the stranger is not ready and too many signals are waiting for them")
	}
	r.buf[i] = append(r.buf[i], frame)
	r.bufBytes[i] += len(frame)
	return nil
}

func (h *Hub) onChat(s *session, m *inbound) *protoError {
	r, e := h.roomOf(s, m)
	if e != nil {
		return e
	}
	if m.Text == nil {
		return perr(CodeBadRequest, "chat needs a \"text\" string")
	}
	text := SanitizeChat(*m.Text)
	if text == "" {
		return perr(CodeBadRequest, "chat text is empty")
	}
	if n := utf8.RuneCountInString(text); n > h.opt.Signal.ChatMaxChars {
		return perr(CodeTooLarge, "chat text has %d characters; at most %d", n, h.opt.Signal.ChatMaxChars)
	}
	h.send(r.other(s), chatMsg{Type: "chat", Room: r.code, Text: text, At: h.opt.Now().UnixMilli()})
	return nil
}

func (h *Hub) onReport(ctx context.Context, s *session, m *inbound) *protoError {
	r, e := h.roomOf(s, m)
	if e != nil {
		return e
	}
	reason := truncate(SanitizeChat(m.Reason), maxReasonChars)
	other := r.other(s)
	h.reports = append(h.reports, reportJob{
		rep: moderation.Report{
			Room: r.code, Reporter: s.id, Reported: other.id, Reason: reason, At: h.opt.Now(),
		},
		ip: other.ipHash, node: other.remote, reporter: s, room: r,
	})
	return nil // runReports ends the room once the report is recorded
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}
