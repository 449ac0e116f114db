package signal

import (
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// conn is one WebSocket. Writes go through a bounded queue, so a slow or
// stalled client never blocks the hub: when its queue is full the socket
// is cut (it may resume) instead.
//
// An idle socket costs no goroutine and no buffer on the write side: a
// writer goroutine exists only while frames are queued, and pings come
// from a timer. Most sockets of a chat service are idle most of the time,
// so this is what bounds a node's memory per session.
type conn struct {
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

// newConn starts pinging ws; finished runs once the socket is closed.
func newConn(ws *websocket.Conn, queue int, pingEvery time.Duration, now func() time.Time, finished func()) *conn {
	c := &conn{
		ws: ws, max: queue, writeTimeout: 10 * time.Second, pingEvery: pingEvery, now: now,
		finished: finished, done: make(chan struct{}),
	}
	c.ping = time.AfterFunc(pingEvery, c.sendPing)
	return c
}

// send queues a frame; false means the conn is closing (or now is, its
// queue being full).
func (c *conn) send(frame []byte) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	if len(c.queue) >= c.max {
		c.mu.Unlock()
		c.close(websocket.CloseTryAgainLater, "send queue full")
		return false
	}
	c.queue = append(c.queue, frame)
	c.startDrain()
	c.mu.Unlock()
	return true
}

// startDrain starts the writer if none runs (c.mu held).
func (c *conn) startDrain() {
	if !c.writing {
		c.writing = true
		go c.drain()
	}
}

// drain writes queued frames until the queue is empty, then exits; after
// close it also writes the close frame and closes the socket.
func (c *conn) drain() {
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
				c.abort()
				return
			}
		}
	}
}

// sendPing runs on the ping timer. gorilla allows WriteControl alongside
// the data writes of a drain.
func (c *conn) sendPing() {
	if isClosed(c) {
		return
	}
	if c.ws.WriteControl(websocket.PingMessage, nil, c.now().Add(c.writeTimeout)) != nil {
		c.abort()
		return
	}
	c.ping.Reset(c.pingEvery)
}

// close ends the conn with a close frame once; what is queued is written
// first, so a final error or notice still reaches the client.
func (c *conn) close(code int, reason string) {
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

// abort drops the socket without a close frame (a write failed, or a
// resume on a new socket took the session over).
func (c *conn) abort() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.done)
	}
	c.queue = nil
	c.mu.Unlock()
	c.finish()
}

func (c *conn) finish() {
	c.finishOnce.Do(func() {
		c.ping.Stop()
		_ = c.ws.Close()
		if c.finished != nil {
			c.finished()
		}
	})
}
