package signal

import (
	"github.com/duetchat/duet/configs"
	"github.com/duetchat/duet/wire"
)

// faceRecheck is welcome.features.face_recheck for this node's config:
// nil when the page should look only before a queue.
func faceRecheck(c configs.Signal) *wire.FaceRecheck {
	if !c.FaceCheck || c.FaceCheckInterval <= 0 {
		return nil
	}
	missing := "warn"
	if c.FaceCheckMissing == "warn_then_leave" {
		missing = "leave"
	}
	return &wire.FaceRecheck{
		IntervalMS: c.FaceCheckInterval.Milliseconds(),
		Missing:    missing,
		GraceMS:    c.FaceCheckGrace.Milliseconds(),
	}
}

// onFace counts what a page's face re-check saw in its own camera during
// a call. The node sees no image and acts on nothing: leaving is the
// page's own `leave`.
func (h *Hub) onFace(s *session, m *wire.Inbound) *wire.Error {
	if _, e := h.roomOf(s, m); e != nil {
		return e
	}
	switch m.Reason {
	case wire.FaceMissing, wire.FaceBack, wire.FaceLeft:
	default:
		return wire.Errorf(wire.CodeBadRequest, "face: reason must be %q, %q or %q", wire.FaceMissing, wire.FaceBack, wire.FaceLeft)
	}
	h.m.faceRecheck.WithLabelValues(m.Reason).Inc()
	return nil
}
