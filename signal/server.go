package signal

import (
	"bytes"
	"errors"
	"net/http"
	"time"

	"github.com/gorilla/websocket"

	"github.com/duetchat/duet/transport"
	"github.com/duetchat/duet/wire"
)

// ServeHTTP upgrades GET /ws to a WebSocket session (or resumes one with
// ?resume=TOKEN) and hands the socket to a goroutine of its own.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.Closing() {
		http.Error(w, "node is shutting down", http.StatusServiceUnavailable)
		return
	}
	if !transport.OriginAllowed(r, h.opt.AllowedOrigins) {
		h.m.refused.WithLabelValues("origin").Inc()
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	// From here on the client is its address key: per-address limits,
	// sessions and the ban hash all count an IPv6 client's whole /64.
	ip := h.keys.Key(transport.ClientIP(r, h.opt.TrustedProxies))
	if ok, why := h.ips.Acquire(ip, h.opt.Now()); !ok {
		// Refused before the upgrade, so a flood costs no socket; the body
		// still speaks the protocol for clients that read it.
		h.m.refused.WithLabelValues("ip_limit").Inc()
		w.Header().Set("Retry-After", "5")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write(wire.Encode(wire.ErrorMsg{Type: wire.TypeError, Code: wire.CodeRateLimited, Message: why}))
		return
	}
	up := websocket.Upgrader{
		// Idle sockets dominate: a small read buffer of their own, and
		// write buffers borrowed from a pool only while writing.
		ReadBufferSize:  1024,
		WriteBufferSize: 4096,
		WriteBufferPool: &h.writeBufs,
		// Origin was checked above, with a clear 403.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		h.ips.Release(ip, h.opt.Now())
		return // the upgrader has answered the client
	}
	// Returning lets net/http drop this request's buffers and the deep
	// stack of its serving goroutine: an idle session keeps only what it
	// needs.
	go h.serveSocket(ws, ip, r.URL.Query().Get("resume"))
}

// serveSocket runs one socket's session until the socket ends.
func (h *Hub) serveSocket(ws *websocket.Conn, ip, resume string) {
	defer h.ips.Release(ip, h.opt.Now())
	ws.SetReadLimit(int64(h.opt.Signal.MaxMessageBytes))
	// Counted under the lock Shutdown sets closing under, so no socket
	// joins h.writers once Shutdown may be waiting on it (a WaitGroup
	// must not grow from zero during a Wait); a socket upgraded while
	// the node began shutting down is told so and closed.
	h.mu.Lock()
	closing := h.closing
	if !closing {
		h.writers.Add(1)
	}
	h.mu.Unlock()
	if closing {
		_ = ws.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseServiceRestart, "service restart"), h.opt.Now().Add(time.Second))
		_ = ws.Close()
		return
	}
	c := transport.NewConn(ws, h.opt.Limits.SendQueue, h.opt.Signal.PingInterval, h.opt.Now, h.writers.Done)

	s, err := h.attach(c, ip, resume)
	if errors.Is(err, errTooManySessions) {
		h.m.refused.WithLabelValues("ip_sessions").Inc()
		c.Send(wire.Encode(wire.ErrorMsg{Type: wire.TypeError, Code: wire.CodeRateLimited, Message: err.Error() + "; close some tabs or try again later"}))
		c.Close(websocket.CloseTryAgainLater, "too many sessions")
		return
	}
	if err != nil {
		h.log.Error("session setup failed", "err", err)
		c.Close(websocket.CloseInternalServerErr, "internal error")
		return
	}
	if h.refuseBanned(s, c) {
		return
	}
	if h.Closing() {
		// Shutdown began while this socket was being attached, too early
		// to find its session: it goes the way Shutdown sends the others.
		c.Send(wire.Encode(wire.ErrorMsg{Type: wire.TypeError, Code: wire.CodeUnavailable, Message: "this node is shutting down; reconnect shortly"}))
		c.Close(websocket.CloseServiceRestart, "service restart")
	}
	clientClosed := h.readLoop(s, c)
	h.detach(s, c, clientClosed)
	c.Close(websocket.CloseNormalClosure, "")
}

// readLoop reads frames until the socket ends; it reports whether the
// client ended it with a close frame (as opposed to a drop or our close).
func (h *Hub) readLoop(s *session, c *transport.Conn) bool {
	// Two missed pongs end the connection.
	wait := 2*h.opt.Signal.PingInterval + h.opt.Signal.PingInterval/2
	c.ReadWithin(wait)
	for {
		kind, frame, err := h.readFrame(c)
		if err != nil {
			// gorilla reports a bare TCP FIN as CloseError 1006: that is a
			// drop (resume grace), not a close frame from the client.
			var ce *websocket.CloseError
			sentClose := errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure
			return sentClose && !c.Closed()
		}
		c.ExtendRead(wait)
		h.handleFrame(s, c, kind == websocket.TextMessage, frame.Bytes())
		h.putReadBuf(frame)
	}
}

// readFrame reads one whole message into a pooled buffer (return it with
// putReadBuf once handled): gorilla's ReadMessage allocates a fresh slice
// per frame, which at thousands of frames a second is mostly GC work.
// Nothing keeps the bytes: decoding copies every string it keeps.
func (h *Hub) readFrame(c *transport.Conn) (int, *bytes.Buffer, error) {
	kind, r, err := c.NextReader()
	if err != nil {
		return kind, nil, err
	}
	buf, _ := h.readBufs.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	buf.Reset()
	if _, err := buf.ReadFrom(r); err != nil {
		h.putReadBuf(buf)
		return kind, nil, err
	}
	return kind, buf, nil
}

// maxPooledRead: a buffer grown by one rare large frame (an SDP near the
// size limit) is left to the GC rather than kept by the pool.
const maxPooledRead = 16 << 10

func (h *Hub) putReadBuf(b *bytes.Buffer) {
	if b.Cap() <= maxPooledRead {
		h.readBufs.Put(b)
	}
}
