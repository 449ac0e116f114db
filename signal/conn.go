package signal

import (
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// conn is one WebSocket. Writes go through a bounded queue drained by one
// writer goroutine, so a slow or stalled client never blocks the hub: when
// its queue is full the socket is cut (it may resume) instead.
type conn struct {
	ws           *websocket.Conn
	out          chan []byte
	done         chan struct{} // closed when the conn is finished
	closeOnce    sync.Once
	closeFrame   []byte // close frame to send on a server-initiated close
	mu           sync.Mutex
	writeTimeout time.Duration
	pingEvery    time.Duration
}

func newConn(ws *websocket.Conn, queue int, pingEvery time.Duration) *conn {
	return &conn{
		ws:           ws,
		out:          make(chan []byte, queue),
		done:         make(chan struct{}),
		writeTimeout: 10 * time.Second,
		pingEvery:    pingEvery,
	}
}

// send queues a frame; false means the queue was full and the conn is now
// being closed.
func (c *conn) send(frame []byte) bool {
	select {
	case <-c.done:
		return false
	default:
	}
	select {
	case c.out <- frame:
		return true
	default:
		c.close(websocket.CloseTryAgainLater, "send queue full")
		return false
	}
}

// close ends the conn with a close frame once; the writer flushes what is
// queued first so a final error or notice still reaches the client.
func (c *conn) close(code int, reason string) {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closeFrame = websocket.FormatCloseMessage(code, reason)
		c.mu.Unlock()
		close(c.done)
	})
}

// abort drops the socket without a close frame (used when a resume on a
// new socket takes the session over).
func (c *conn) abort() {
	c.closeOnce.Do(func() { close(c.done) })
	_ = c.ws.Close()
}

// writeLoop runs until the conn is closed; it owns all writes to ws.
func (c *conn) writeLoop() {
	ping := time.NewTicker(c.pingEvery)
	defer ping.Stop()
	defer c.ws.Close()
	for {
		select {
		case frame := <-c.out:
			if c.write(websocket.TextMessage, frame) != nil {
				c.abort()
				return
			}
		case <-ping.C:
			if c.ws.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.writeTimeout)) != nil {
				c.abort()
				return
			}
		case <-c.done:
			c.flush()
			c.mu.Lock()
			cf := c.closeFrame
			c.mu.Unlock()
			if cf != nil {
				_ = c.ws.WriteControl(websocket.CloseMessage, cf, time.Now().Add(time.Second))
			}
			return
		}
	}
}

// flush writes whatever is still queued, bounded by the write deadline.
func (c *conn) flush() {
	for {
		select {
		case frame := <-c.out:
			if c.write(websocket.TextMessage, frame) != nil {
				return
			}
		default:
			return
		}
	}
}

func (c *conn) write(kind int, frame []byte) error {
	_ = c.ws.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	return c.ws.WriteMessage(kind, frame)
}
