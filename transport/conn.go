// Package transport is the node's side of a client socket, apart from
// what is said on it: whose socket it is (the client address behind
// trusted proxies, the page's origin), how many one address may hold and
// how fast it may talk, and the writer that keeps a slow client from
// blocking anyone.
package transport

import (
	"io"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Conn is one WebSocket. Writes go through a bounded queue, so a slow or
// stalled client never blocks the hub: when its queue is full the socket
// is cut (it may resume) instead.
//
// An idle socket costs no goroutine and no buffer on the write side: a
// writer goroutine exists only while frames are queued, and pings come
// from a timer. Most sockets of a chat service are idle most of the time,
// so this is what bounds a node's memory per session.
type Conn struct {
	ws           *websocket.Conn
	max          int // frames queued before the socket is cut
	writeTimeout time.Duration
	pingEvery    time.Duration
	now          func() time.Time // the hub's clock, for deadlines
	ping         *time.Timer
	finished     func() // called once when the socket is closed for good

	mu         sync.Mutex
	queue      [][]byte
	writing    bool // a drain goroutine owns the data writes
	closed     bool // close or abort was called
	closeFrame []byte
	done       chan struct{} // closed by close or abort
	finishOnce sync.Once
}

// NewConn starts pinging ws; finished runs once the socket is closed.
func NewConn(ws *websocket.Conn, queue int, pingEvery time.Duration, now func() time.Time, finished func()) *Conn {
	c := &Conn{
		ws: ws, max: queue, writeTimeout: 10 * time.Second, pingEvery: pingEvery, now: now,
		finished: finished, done: make(chan struct{}),
	}
	c.ping = time.AfterFunc(pingEvery, c.sendPing)
	return c
}

// Send queues a frame; false means the conn is closing (or now is, its
// queue being full).
func (c *Conn) Send(frame []byte) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	if len(c.queue) >= c.max {
		c.mu.Unlock()
		c.Close(websocket.CloseTryAgainLater, "send queue full")
		return false
	}
	c.queue = append(c.queue, frame)
	c.startDrain()
	c.mu.Unlock()
	return true
}

// startDrain starts the writer if none runs (c.mu held).
func (c *Conn) startDrain() {
	if !c.writing {
		c.writing = true
		go c.drain()
	}
}

// drain writes queued frames until the queue is empty, then exits; after
// close it also writes the close frame and closes the socket.
func (c *Conn) drain() {
	for {
		c.mu.Lock()
		batch := c.queue
		c.queue = nil
		if len(batch) == 0 {
			c.writing = false
			closing, cf := c.closed, c.closeFrame
			c.mu.Unlock()
			if closing {
				if cf != nil {
					_ = c.ws.WriteControl(websocket.CloseMessage, cf, c.now().Add(time.Second))
				}
				c.finish()
			}
			return
		}
		c.mu.Unlock()
		for _, frame := range batch {
			_ = c.ws.SetWriteDeadline(c.now().Add(c.writeTimeout))
			if c.ws.WriteMessage(websocket.TextMessage, frame) != nil {
				c.mu.Lock()
				c.writing = false
				c.mu.Unlock()
				c.Abort()
				return
			}
		}
	}
}

// sendPing runs on the ping timer. gorilla allows WriteControl alongside
// the data writes of a drain.
func (c *Conn) sendPing() {
	if c.Closed() {
		return
	}
	if c.ws.WriteControl(websocket.PingMessage, nil, c.now().Add(c.writeTimeout)) != nil {
		c.Abort()
		return
	}
	c.ping.Reset(c.pingEvery)
}

// Close ends the conn with a close frame once; what is queued is written
// first, so a final error or notice still reaches the client.
func (c *Conn) Close(code int, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	c.closeFrame = websocket.FormatCloseMessage(code, reason)
	close(c.done)
	c.startDrain()
}

// Abort drops the socket without a close frame (a write failed, or a
// resume on a new socket took the session over).
func (c *Conn) Abort() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.done)
	}
	c.queue = nil
	c.mu.Unlock()
	c.finish()
}

func (c *Conn) finish() {
	c.finishOnce.Do(func() {
		c.ping.Stop()
		_ = c.ws.Close()
		if c.finished != nil {
			c.finished()
		}
	})
}

// Closed says whether Close or Abort was called.
func (c *Conn) Closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// ReadWithin makes every read wait at most wait, and a pong from the
// client counts as a read: a client that neither talks nor answers pings
// ends the socket.
func (c *Conn) ReadWithin(wait time.Duration) {
	_ = c.ws.SetReadDeadline(c.now().Add(wait))
	c.ws.SetPongHandler(func(string) error {
		return c.ws.SetReadDeadline(c.now().Add(wait))
	})
}

// ExtendRead gives the reader wait more, after a frame came.
func (c *Conn) ExtendRead(wait time.Duration) {
	_ = c.ws.SetReadDeadline(c.now().Add(wait))
}

// NextReader is the next frame's kind and bytes, as gorilla/websocket
// reads it.
func (c *Conn) NextReader() (int, io.Reader, error) { return c.ws.NextReader() }
