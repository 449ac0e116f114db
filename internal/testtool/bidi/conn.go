// Package bidi is a small WebDriver BiDi client for tests: it starts a
// headless Firefox on a throwaway profile and drives its tabs (navigate,
// evaluate JavaScript, click and type with real input events, screenshots)
// over the WebSocket Firefox serves itself, so browser tests stay in Go
// with no Node.js, geckodriver or npm. It speaks only the few commands
// those tests need: https://w3c.github.io/webdriver-bidi/.
package bidi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"

	"github.com/gorilla/websocket"
)

// Conn is one WebDriver BiDi session's socket: commands go out with an id
// and their answers are matched back by it; events go to onEvent.
type Conn struct {
	ws      *websocket.Conn
	onEvent func(method string, params json.RawMessage)

	writeMu sync.Mutex // gorilla allows one writer at a time

	mu      sync.Mutex
	nextID  int64
	pending map[int64]chan reply
	err     error         // why the socket ended, once done is closed
	done    chan struct{} // closed when the reader has stopped
}

type reply struct {
	result json.RawMessage
	err    error
}

// message is any frame from the browser: a command's answer (success or
// error, with its id) or an event (with its method).
type message struct {
	Type    string          `json:"type"`
	ID      *int64          `json:"id"`
	Result  json.RawMessage `json:"result"`
	Error   string          `json:"error"`
	Message string          `json:"message"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params"`
}

// Dial connects to a BiDi endpoint (ws://host:port/session). onEvent,
// when not nil, is called on the reader goroutine for every event, so it
// must not block or call back into the Conn.
func Dial(ctx context.Context, url string, onEvent func(method string, params json.RawMessage)) (*Conn, error) {
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, url, nil)
	if err != nil {
		return nil, fmt.Errorf("bidi: dialing %s: %w", url, err)
	}
	// Screenshots arrive as one base64 frame of a few MB.
	ws.SetReadLimit(64 << 20)
	c := &Conn{ws: ws, onEvent: onEvent, pending: map[int64]chan reply{}, done: make(chan struct{})}
	go c.read()
	return c, nil
}

func (c *Conn) read() {
	var err error
	defer func() {
		c.mu.Lock()
		c.err = err
		for id, ch := range c.pending {
			ch <- reply{err: fmt.Errorf("bidi: connection closed: %w", err)}
			delete(c.pending, id)
		}
		c.mu.Unlock()
		close(c.done)
	}()
	for {
		var raw []byte
		if _, raw, err = c.ws.ReadMessage(); err != nil {
			return
		}
		var m message
		if jerr := json.Unmarshal(raw, &m); jerr != nil {
			continue // not ours to interpret; the command it answers times out
		}
		switch {
		case m.Type == "event":
			if c.onEvent != nil {
				c.onEvent(m.Method, m.Params)
			}
		case m.ID != nil:
			c.mu.Lock()
			ch, ok := c.pending[*m.ID]
			delete(c.pending, *m.ID)
			c.mu.Unlock()
			if !ok {
				continue // its caller gave up
			}
			if m.Type == "error" {
				ch <- reply{err: fmt.Errorf("%s: %s", m.Error, m.Message)}
			} else {
				ch <- reply{result: m.Result}
			}
		}
	}
}

// Call sends one command and decodes its result into out (nil: ignored).
func (c *Conn) Call(ctx context.Context, method string, params, out any) error {
	if params == nil {
		params = struct{}{}
	}
	ch := make(chan reply, 1)
	c.mu.Lock()
	if c.err != nil || isClosed(c.done) {
		c.mu.Unlock()
		return fmt.Errorf("bidi: %s: connection closed: %w", method, c.err)
	}
	c.nextID++
	id := c.nextID
	c.pending[id] = ch
	c.mu.Unlock()
	frame, err := json.Marshal(struct {
		ID     int64  `json:"id"`
		Method string `json:"method"`
		Params any    `json:"params"`
	}{id, method, params})
	if err != nil {
		c.forget(id)
		return fmt.Errorf("bidi: %s: %w", method, err)
	}
	c.writeMu.Lock()
	err = c.ws.WriteMessage(websocket.TextMessage, frame)
	c.writeMu.Unlock()
	if err != nil {
		c.forget(id)
		return fmt.Errorf("bidi: sending %s: %w", method, err)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return fmt.Errorf("bidi: %s: %w", method, r.err)
		}
		if out != nil {
			if err := json.Unmarshal(r.result, out); err != nil {
				return fmt.Errorf("bidi: %s: decoding result: %w", method, err)
			}
		}
		return nil
	case <-ctx.Done():
		c.forget(id)
		return fmt.Errorf("bidi: %s: %w", method, ctx.Err())
	}
}

func (c *Conn) forget(id int64) {
	c.mu.Lock()
	delete(c.pending, id)
	c.mu.Unlock()
}

// Close closes the socket and waits for the reader to stop.
func (c *Conn) Close() error {
	err := c.ws.Close()
	<-c.done
	if errors.Is(err, websocket.ErrCloseSent) {
		err = nil
	}
	return err
}

// Done is closed once the socket has ended (the browser quit or Close).
func (c *Conn) Done() <-chan struct{} { return c.done }

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
