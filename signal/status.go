package signal

// The hub's read-only reports: the live counts (the stats endpoint, the
// online gauge) and the live rooms (the admin API, the path metrics, the
// SFU and TURN glue). None of them changes the hub.

import "time"

// Stats are the public counts.
type Stats struct {
	Online int `json:"online"`
	Rooms  int `json:"rooms"`
}

// Stats returns the node's live counts.
func (h *Hub) Stats() Stats {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return Stats{Online: h.online, Rooms: len(h.rooms)}
}

// RoomInfo describes one live room for the admin API.
type RoomInfo struct {
	Code    string
	Mode    string
	Started time.Time
	A, B    string // session ids: A offers, B answers
}

// Rooms lists the live rooms.
func (h *Hub) Rooms() []RoomInfo {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]RoomInfo, 0, len(h.rooms))
	for _, r := range h.rooms {
		out = append(out, roomInfo(r))
	}
	return out
}

// Room describes one live room; false if there is none with that code.
func (h *Hub) Room(code string) (RoomInfo, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	r, ok := h.rooms[code]
	if !ok {
		return RoomInfo{}, false
	}
	return roomInfo(r), true
}

func roomInfo(r *room) RoomInfo {
	return RoomInfo{Code: r.code, Mode: r.mode, Started: r.started, A: r.side[0].id, B: r.side[1].id}
}
