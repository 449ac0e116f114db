package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/duetchat/duet/moderation"
	"github.com/duetchat/duet/signal"
)

// moderator is what the node does with reports and bans: the hub checks
// and reports, the admin API adds, lists and lifts (moderation.Moderator,
// or its Cache on Redis).
type moderator interface {
	signal.Moderator
	Add(ctx context.Context, b moderation.Ban, d time.Duration) (moderation.Ban, error)
	List(ctx context.Context) ([]moderation.Ban, error)
	Lift(ctx context.Context, id string) (bool, error)
}

// banStoreTimeout bounds one admin call to the ban store.
const banStoreTimeout = 3 * time.Second

// banStoreDown answers an admin call the store could not serve.
func (n *Node) banStoreDown(w http.ResponseWriter, what string, err error) {
	n.log.Error(what, "err", err)
	writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": "the ban store is unavailable"})
}

// maxBanDuration bounds an operator's ban: a typo must not ban for ever.
const maxBanDuration = 366 * 24 * time.Hour

type banView struct {
	ID        string `json:"id"`
	Session   string `json:"session,omitempty"`
	IPHash    string `json:"ip_hash,omitempty"`
	Reason    string `json:"reason"`
	By        string `json:"by"`
	CreatedAt int64  `json:"created_at"` // unix ms
	Until     int64  `json:"until"`      // unix ms
}

func viewBan(b moderation.Ban) banView {
	return banView{
		ID: b.ID, Session: b.Session, IPHash: b.IPHash, Reason: b.Reason, By: b.By,
		CreatedAt: b.Created.UnixMilli(), Until: b.Until.UnixMilli(),
	}
}

func (n *Node) listBans(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), banStoreTimeout)
	defer cancel()
	bans, err := n.moderator.List(ctx)
	if err != nil {
		n.banStoreDown(w, "listing bans", err)
		return
	}
	out := make([]banView, 0, len(bans))
	for _, b := range bans {
		out = append(out, viewBan(b))
	}
	writeJSON(w, http.StatusOK, map[string]any{"bans": out})
}

// banRequest is what an operator posts: a session, an address (hashed
// here, never stored) or an address hash read from logs or the list. An
// IPv6 address is hashed by its limits.ipv6_prefix block, as the hub
// hashes its clients: a ban on one address of a /64 covers the /64.
type banRequest struct {
	Session  string `json:"session"`
	IP       string `json:"ip"`
	IPHash   string `json:"ip_hash"`
	Duration string `json:"duration"` // Go duration; empty = moderation.ban_duration
	Reason   string `json:"reason"`
}

func (n *Node) addBan(w http.ResponseWriter, r *http.Request) {
	bad := func(format string, args ...any) {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": fmt.Sprintf(format, args...)})
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	var req banRequest
	if err := dec.Decode(&req); err != nil {
		bad("body: %v (want {\"session\", \"ip\" or \"ip_hash\", \"duration\", \"reason\"})", err)
		return
	}
	b := moderation.Ban{Session: strings.TrimSpace(req.Session), IPHash: strings.TrimSpace(req.IPHash), Reason: req.Reason, By: moderation.ByAdmin}
	if req.IP != "" {
		a, err := netip.ParseAddr(strings.TrimSpace(req.IP))
		if err != nil {
			bad("ip %q is not an IP address", req.IP)
			return
		}
		if b.IPHash != "" {
			bad("give ip or ip_hash, not both")
			return
		}
		b.IPHash = n.hub.HashIP(a.Unmap().String())
	}
	if b.Session == "" && b.IPHash == "" {
		bad("a ban needs a session, an ip or an ip_hash")
		return
	}
	if len(b.Session) > 64 || len(b.IPHash) > 64 || len(b.Reason) > 200 {
		bad("session and ip_hash take at most 64 bytes, reason 200")
		return
	}
	d := n.cfg.Moderation.BanDuration
	if req.Duration != "" {
		var err error
		if d, err = time.ParseDuration(req.Duration); err != nil || d <= 0 || d > maxBanDuration {
			bad("duration %q: want a positive Go duration up to %s, e.g. \"24h\"", req.Duration, maxBanDuration)
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), banStoreTimeout)
	defer cancel()
	ban, err := n.moderator.Add(ctx, b, d)
	if err != nil {
		if errors.Is(err, moderation.ErrBadBan) {
			bad("%v", err)
			return
		}
		n.banStoreDown(w, "adding a ban", err)
		return
	}
	n.log.Warn("ban added by the operator", "ban", ban.ID, "session", ban.Session, "ip", ban.IPHash, "until", ban.Until)
	n.hub.ApplyBan(ban)
	writeJSON(w, http.StatusCreated, viewBan(ban))
}

func (n *Node) liftBan(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), banStoreTimeout)
	defer cancel()
	id := r.PathValue("id")
	ok, err := n.moderator.Lift(ctx, id)
	switch {
	case err != nil:
		n.banStoreDown(w, "lifting a ban", err)
	case !ok:
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "no such ban in force"})
	default:
		n.log.Warn("ban lifted by the operator", "ban", id)
		w.WriteHeader(http.StatusNoContent)
	}
}
