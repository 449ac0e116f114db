package node

import (
	"crypto/subtle"
	"net/http"
	"slices"
	"strings"

	"github.com/duetchat/duet/signal"
)

// Direction is one way of a room's media, as far as this node can see it.
type Direction struct {
	Bytes      uint64  `json:"bytes"`
	Packets    uint64  `json:"packets"`
	BitrateBPS float64 `json:"bitrate_bps"`
	Loss       float64 `json:"loss"`
	RTTMS      float64 `json:"rtt_ms"`
	NACKs      uint64  `json:"nacks"`
	PLIs       uint64  `json:"plis"`
}

// RoomView is the admin API's ROOM (docs/PROTOCOL.md, "Admin API").
type RoomView struct {
	Room      string    `json:"room"`
	Mode      string    `json:"mode"`
	Path      string    `json:"path"` // p2p | turn | sfu
	StartedAt int64     `json:"started_at"`
	AToB      Direction `json:"a_to_b"`
	BToA      Direction `json:"b_to_a"`
}

// MediaPaths reports what a relaying role saw of a room; the TURN relay
// and the SFU each implement it. ok is false when the role saw nothing.
type MediaPaths interface {
	RoomMedia(info signal.RoomInfo) (path string, aToB, bToA Direction, ok bool)
}

func (n *Node) roomView(info signal.RoomInfo) RoomView {
	v := RoomView{Room: info.Code, Mode: info.Mode, Path: "p2p", StartedAt: info.Started.UnixMilli()}
	for _, p := range n.paths {
		if path, ab, ba, ok := p.RoomMedia(info); ok {
			v.Path, v.AToB, v.BToA = path, ab, ba
			break
		}
	}
	return v
}

// adminOnly refuses a request without the configured bearer token. With
// no admin.token set the admin API is closed to everyone.
func (n *Node) adminOnly(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !n.isAdmin(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="duet admin"`)
			msg := "admin token required (Authorization: Bearer TOKEN)"
			if n.cfg.Admin.Token == "" {
				msg = "the admin API is off: set admin.token"
			}
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": msg})
			return
		}
		next(w, r)
	}
}

// isAdmin reports whether r carries the admin token: "Authorization:
// Bearer TOKEN", the scheme in any case (RFC 7235), the token compared in
// constant time. With no admin.token nobody is.
func (n *Node) isAdmin(r *http.Request) bool {
	token := n.cfg.Admin.Token
	scheme, got, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if token == "" || !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	got = strings.TrimLeft(got, " ")
	return subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

func (n *Node) listRooms(w http.ResponseWriter, _ *http.Request) {
	infos := n.hub.Rooms()
	slices.SortFunc(infos, func(a, b signal.RoomInfo) int { return a.Started.Compare(b.Started) })
	rooms := make([]RoomView, 0, len(infos))
	for _, info := range infos {
		rooms = append(rooms, n.roomView(info))
	}
	writeJSON(w, http.StatusOK, map[string]any{"rooms": rooms})
}

func (n *Node) getRoom(w http.ResponseWriter, r *http.Request) {
	info, ok := n.hub.Room(r.PathValue("room"))
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "no such room"})
		return
	}
	writeJSON(w, http.StatusOK, n.roomView(info))
}
