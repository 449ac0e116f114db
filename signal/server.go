package signal

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"
)

// ServeHTTP upgrades GET /ws to a WebSocket session (or resumes one with
// ?resume=TOKEN) and runs its read loop until the socket ends.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.Closing() {
		http.Error(w, "node is shutting down", http.StatusServiceUnavailable)
		return
	}
	if !h.originAllowed(r) {
		h.m.refused.WithLabelValues("origin").Inc()
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	ip := clientIP(r)
	if ok, why := h.ips.acquire(ip, h.opt.Now()); !ok {
		h.m.refused.WithLabelValues("ip_limit").Inc()
		w.Header().Set("Retry-After", "5")
		http.Error(w, why, http.StatusTooManyRequests)
		return
	}
	defer h.ips.release(ip, h.opt.Now())

	up := websocket.Upgrader{
		ReadBufferSize:  4096,
		WriteBufferSize: 4096,
		// Origin was checked above, with a clear 403.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader has answered the client
	}
	ws.SetReadLimit(int64(h.opt.Signal.MaxMessageBytes))
	c := newConn(ws, h.opt.Limits.SendQueue, h.opt.Signal.PingInterval)
	h.writers.Add(1)
	go func() {
		defer h.writers.Done()
		c.writeLoop()
	}()

	s, err := h.attach(c, ip, r.URL.Query().Get("resume"))
	if err != nil {
		h.log.Error("session setup failed", "err", err)
		c.close(websocket.CloseInternalServerErr, "internal error")
		return
	}
	clientClosed := h.readLoop(s, c)
	h.detach(s, c, clientClosed)
	c.close(websocket.CloseNormalClosure, "")
}

// readLoop reads frames until the socket ends; it reports whether the
// client ended it with a close frame (as opposed to a drop or our close).
func (h *Hub) readLoop(s *session, c *conn) bool {
	// Two missed pongs end the connection.
	wait := 2*h.opt.Signal.PingInterval + h.opt.Signal.PingInterval/2
	_ = c.ws.SetReadDeadline(time.Now().Add(wait))
	c.ws.SetPongHandler(func(string) error {
		return c.ws.SetReadDeadline(time.Now().Add(wait))
	})
	for {
		kind, frame, err := c.ws.ReadMessage()
		if err != nil {
			// gorilla reports a bare TCP FIN as CloseError 1006: that is a
			// drop (resume grace), not a close frame from the client.
			var ce *websocket.CloseError
			sentClose := errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure
			return sentClose && !isClosed(c)
		}
		_ = c.ws.SetReadDeadline(time.Now().Add(wait))
		h.handleFrame(s, c, kind == websocket.TextMessage, frame)
	}
}

func isClosed(c *conn) bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// originAllowed: no Origin (a non-browser client) passes; an empty allow
// list means the page must come from the host it connects to.
func (h *Hub) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if len(h.opt.AllowedOrigins) == 0 {
		u, err := url.Parse(origin)
		return err == nil && strings.EqualFold(u.Host, r.Host)
	}
	for _, o := range h.opt.AllowedOrigins {
		if o == "*" || strings.EqualFold(strings.TrimRight(o, "/"), origin) {
			return true
		}
	}
	return false
}

// clientIP is the direct peer's address; proxy headers are not trusted.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
