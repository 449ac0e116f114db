package signal

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/duetchat/duet/internal/chatlink"
	"github.com/duetchat/duet/wire"
)

// chatLinks says what becomes of a chat text from s in r under
// signal.chat_links: relayed as is (""), relayed flagged for the page to
// show as plain text (wire.LinksPlain), or refused with link_held. Links
// go through as they are once the strangers have talked a while: the
// room open ChatLinksAfter, and each having sent ChatLinksAfterMessages
// chats (h.mu held).
func (h *Hub) chatLinks(r *room, text string) (string, *wire.Error) {
	cfg := h.opt.Signal
	if cfg.ChatLinks == "" || cfg.ChatLinks == "allow" || r.talked(h.opt.Now(), cfg.ChatLinksAfter, cfg.ChatLinksAfterMessages) {
		return "", nil
	}
	if !chatlink.Contains(text) {
		return "", nil
	}
	if cfg.ChatLinks == "hold" {
		return "", wire.Errorf(wire.CodeLinkHeld, "Links can be sent once you have talked a while: %s. Nothing was sent.", whileText(cfg.ChatLinksAfter, cfg.ChatLinksAfterMessages))
	}
	return wire.LinksPlain, nil
}

// talked reports whether r's strangers have talked long enough for links.
func (r *room) talked(now time.Time, after time.Duration, msgs int) bool {
	return now.Sub(r.started) >= after && r.chats[0] >= msgs && r.chats[1] >= msgs
}

func whileText(after time.Duration, msgs int) string {
	var parts []string
	if after > 0 {
		parts = append(parts, fmt.Sprintf("%s into the chat", after))
	}
	switch {
	case msgs == 1:
		parts = append(parts, "1 message from each of you")
	case msgs > 1:
		parts = append(parts, fmt.Sprintf("%d messages from each of you", msgs))
	}
	return strings.Join(parts, " and ")
}

var chatPrefix = []byte(`{"type":"chat"`)

// countRemoteChat counts a chat the stranger on another node sent into
// s's room: links need both sides' counts, and the sender's node counted
// it there (h.mu held).
func (h *Hub) countRemoteChat(s *session, frame []byte) {
	if r := s.room; r != nil && bytes.HasPrefix(frame, chatPrefix) {
		r.chats[1-r.index(s)]++
	}
}

// reportReason checks a report's reason (wire.ReportReason) and counts it.
func (h *Hub) reportReason(reason string) (string, *wire.Error) {
	r, ok := wire.ReportReason(reason)
	if !ok {
		return "", wire.Errorf(wire.CodeBadRequest, "reason is longer than %d characters; say it in one of %s", wire.MaxReasonChars, strings.Join(wire.ReportReasons(), ", "))
	}
	h.reportReasons.WithLabelValues(r).Inc()
	return r, nil
}

// takeBlocks applies the block token and list a queue or next carries:
// without a token a session keeps the identity it has (its session's,
// or an earlier token's); a next without either keeps the last list
// (h.mu held).
func (h *Hub) takeBlocks(s *session, m *wire.Inbound) *wire.Error {
	if m.Type == wire.TypeNext && m.Me == "" && m.Blocked == nil {
		return nil
	}
	self, blocked, e := h.blocks.blockPrefs(m.Me, m.Blocked)
	if e != nil {
		return e
	}
	if self != "" {
		s.self = self
	}
	s.blocked = blocked
	return nil
}

// initSafety sets up block handles and the report-reason counter.
func (h *Hub) initSafety() error {
	blocks, err := newBlockKeys(h.salt, h.opt.Random)
	if err != nil {
		return err
	}
	h.blocks = blocks
	h.reportReasons = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "duet_report_reasons_total", Help: "Reports received, by the reason the reporter gave.",
	}, []string{"reason"})
	for _, r := range wire.ReportReasons() {
		h.reportReasons.WithLabelValues(r)
	}
	if h.opt.Registerer != nil {
		if err := h.opt.Registerer.Register(h.reportReasons); err != nil {
			return fmt.Errorf("signal: registering metrics: %w", err)
		}
	}
	return nil
}
