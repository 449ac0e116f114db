package signal

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"github.com/duetchat/duet/wire"
)

// ServeHTTP upgrades GET /ws to a WebSocket session (or resumes one with
// ?resume=TOKEN) and hands the socket to a goroutine of its own.
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
	// From here on the client is its address key: per-address limits,
	// sessions and the ban hash all count an IPv6 client's whole /64.
	ip := h.keys.Key(clientIP(r, h.opt.TrustedProxies))
	if ok, why := h.ips.acquire(ip, h.opt.Now()); !ok {
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
		h.ips.release(ip, h.opt.Now())
		return // the upgrader has answered the client
	}
	// Returning lets net/http drop this request's buffers and the deep
	// stack of its serving goroutine: an idle session keeps only what it
	// needs.
	go h.serveSocket(ws, ip, r.URL.Query().Get("resume"))
}

// serveSocket runs one socket's session until the socket ends.
func (h *Hub) serveSocket(ws *websocket.Conn, ip, resume string) {
	defer h.ips.release(ip, h.opt.Now())
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
	c := newConn(ws, h.opt.Limits.SendQueue, h.opt.Signal.PingInterval, h.opt.Now, h.writers.Done)

	s, err := h.attach(c, ip, resume)
	if errors.Is(err, errTooManySessions) {
		h.m.refused.WithLabelValues("ip_sessions").Inc()
		c.send(wire.Encode(wire.ErrorMsg{Type: wire.TypeError, Code: wire.CodeRateLimited, Message: err.Error() + "; close some tabs or try again later"}))
		c.close(websocket.CloseTryAgainLater, "too many sessions")
		return
	}
	if err != nil {
		h.log.Error("session setup failed", "err", err)
		c.close(websocket.CloseInternalServerErr, "internal error")
		return
	}
	if h.refuseBanned(s, c) {
		return
	}
	if h.Closing() {
		// Shutdown began while this socket was being attached, too early
		// to find its session: it goes the way Shutdown sends the others.
		c.send(wire.Encode(wire.ErrorMsg{Type: wire.TypeError, Code: wire.CodeUnavailable, Message: "this node is shutting down; reconnect shortly"}))
		c.close(websocket.CloseServiceRestart, "service restart")
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
	_ = c.ws.SetReadDeadline(h.opt.Now().Add(wait))
	c.ws.SetPongHandler(func(string) error {
		return c.ws.SetReadDeadline(h.opt.Now().Add(wait))
	})
	for {
		kind, frame, err := h.readFrame(c)
		if err != nil {
			// gorilla reports a bare TCP FIN as CloseError 1006: that is a
			// drop (resume grace), not a close frame from the client.
			var ce *websocket.CloseError
			sentClose := errors.As(err, &ce) && ce.Code != websocket.CloseAbnormalClosure
			return sentClose && !isClosed(c)
		}
		_ = c.ws.SetReadDeadline(h.opt.Now().Add(wait))
		h.handleFrame(s, c, kind == websocket.TextMessage, frame.Bytes())
		h.putReadBuf(frame)
	}
}

// readFrame reads one whole message into a pooled buffer (return it with
// putReadBuf once handled): gorilla's ReadMessage allocates a fresh slice
// per frame, which at thousands of frames a second is mostly GC work.
// Nothing keeps the bytes: decoding copies every string it keeps.
func (h *Hub) readFrame(c *conn) (int, *bytes.Buffer, error) {
	kind, r, err := c.ws.NextReader()
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

// clientIP is the address limits and bans key on: the direct peer's,
// unless that peer is a trusted proxy, in which case the proxy chain is
// read from the right (X-Forwarded-For, else Forwarded) and the first
// address that is not itself a trusted proxy is the client. A client can
// put anything in those headers, so nothing is believed from a peer that
// is not listed.
func clientIP(r *http.Request, trusted []netip.Prefix) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if len(trusted) == 0 || !isTrusted(host, trusted) {
		return host
	}
	chain := forwardedChain(r)
	for i := len(chain) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(chain[i])
		if err != nil {
			return host // a chain we cannot read names nobody
		}
		if !isTrusted(a.String(), trusted) {
			return a.Unmap().String()
		}
	}
	return host
}

func isTrusted(ip string, trusted []netip.Prefix) bool {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// forwardedChain lists the addresses a proxy chain reports, client first.
func forwardedChain(r *http.Request) []string {
	var out []string
	for _, h := range r.Header.Values("X-Forwarded-For") {
		for _, part := range strings.Split(h, ",") {
			if p := strings.TrimSpace(part); p != "" {
				out = append(out, p)
			}
		}
	}
	if len(out) > 0 {
		return out
	}
	for _, h := range r.Header.Values("Forwarded") {
		for _, elem := range strings.Split(h, ",") {
			for _, pair := range strings.Split(elem, ";") {
				k, v, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if !ok || !strings.EqualFold(k, "for") {
					continue
				}
				v = strings.Trim(v, `"`)
				// for="[2001:db8::1]:4711" or for=192.0.2.1:80
				if strings.HasPrefix(v, "[") {
					if end := strings.Index(v, "]"); end > 0 {
						v = v[1:end]
					}
				} else if h, _, err := net.SplitHostPort(v); err == nil {
					v = h
				}
				out = append(out, v)
			}
		}
	}
	return out
}
