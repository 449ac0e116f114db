package wire

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Message is any message the node sends, decoded: the fields of every
// node message side by side (each type fills its own, see
// docs/PROTOCOL.md), and the frame as it came in Raw, for what the typed
// fields cannot say (a field's JSON type, a field the client does not
// know yet).
type Message struct {
	Type string `json:"type"`

	// welcome
	Protocol int      `json:"protocol"`
	Session  string   `json:"session"`
	Token    string   `json:"token"`
	Features Features `json:"features"`
	Online   int      `json:"online"`
	Resumed  bool     `json:"resumed"`

	// queued, matched, media, room messages
	Room               string        `json:"room"`
	Role               string        `json:"role"`
	Mode               string        `json:"mode"`
	CommonInterests    []string      `json:"common_interests"`
	ICEServers         []ICEServer   `json:"ice_servers"`
	Media              string        `json:"media"`
	P2PTimeoutMS       int64         `json:"p2p_timeout_ms"`
	ICETransportPolicy string        `json:"ice_transport_policy"`
	SDP                string        `json:"sdp"`
	Leg                string        `json:"leg"`
	Candidate          *ICECandidate `json:"candidate"`
	Text               string        `json:"text"`
	At                 int64         `json:"at"`
	On                 bool          `json:"on"`
	Reason             string        `json:"reason"`

	// error
	Code    string `json:"code"`
	Message string `json:"message"`
	Ref     string `json:"ref"`
	Until   int64  `json:"until"`

	Raw json.RawMessage `json:"-"`
}

// ParseMessage decodes one frame from the node.
func ParseMessage(frame []byte) (*Message, error) {
	m := &Message{}
	if err := json.Unmarshal(frame, m); err != nil {
		return nil, fmt.Errorf("node sent %.200q: %w", frame, err)
	}
	m.Raw = append(json.RawMessage(nil), frame...)
	return m, nil
}

// Fields is the message as a generic JSON object, for asserting on its
// shape (which keys there are and of which JSON type).
func (m *Message) Fields() map[string]any {
	var f map[string]any
	_ = json.Unmarshal(m.Raw, &f) // Raw decoded once already
	return f
}

// Request is a client message as Go: Send encodes it with the fields it
// sets. The helpers of Client build the usual ones; a test that needs a
// field the node must refuse (of the wrong type, say) uses SendRaw.
type Request struct {
	Type      string   `json:"type"`
	Mode      string   `json:"mode,omitempty"`
	Interests []string `json:"interests,omitempty"`
	Lang      string   `json:"lang,omitempty"`
	Face      *bool    `json:"face,omitempty"`
	Room      string   `json:"room,omitempty"`
	SDP       string   `json:"sdp,omitempty"`
	Leg       string   `json:"leg,omitempty"`
	Text      *string  `json:"text,omitempty"`
	On        *bool    `json:"on,omitempty"`
	Reason    string   `json:"reason,omitempty"`
}

// candidateRequest keeps "candidate": null, the end of candidates.
type candidateRequest struct {
	Type      string        `json:"type"`
	Room      string        `json:"room"`
	Candidate *ICECandidate `json:"candidate"`
	Leg       string        `json:"leg,omitempty"`
}

// DialOptions says how Dial reaches the node.
type DialOptions struct {
	// Origin is sent as the Origin header when set; the node refuses
	// origins it does not serve.
	Origin string
	// Header is added to the handshake (X-Forwarded-For behind a test
	// proxy, say).
	Header http.Header
	// NetDialContext dials the TCP connection (a source address, a
	// network namespace); nil dials as net.Dialer does.
	NetDialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// HandshakeTimeout bounds the handshake; zero means 10 s.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds each write; zero means none.
	WriteTimeout time.Duration
	// BufferSize sizes the socket's read and write buffers; zero means
	// gorilla/websocket's default. Small buffers let one process hold
	// tens of thousands of idle sockets.
	BufferSize int
}

// DialError is a handshake the node refused or that failed; Response is
// the node's answer when there was one (its status, Retry-After).
type DialError struct {
	URL      string
	Response *http.Response
	Err      error
}

func (e *DialError) Error() string {
	if e.Response != nil {
		return fmt.Sprintf("dial %s: %v (HTTP %d)", e.URL, e.Err, e.Response.StatusCode)
	}
	return fmt.Sprintf("dial %s: %v", e.URL, e.Err)
}

func (e *DialError) Unwrap() error { return e.Err }

// StatusCode is the node's HTTP status, 0 when it never answered.
func (e *DialError) StatusCode() int {
	if e.Response == nil {
		return 0
	}
	return e.Response.StatusCode
}

// Client is one session's socket to a node, as a browser would hold it.
// Sends may come from any goroutine; reads from one at a time.
type Client struct {
	ws           *websocket.Conn
	writeTimeout time.Duration
	wmu          sync.Mutex
}

// Dial opens a socket to url (ws:// or wss://, …/ws with ?resume= when
// resuming). The welcome is not read: Next returns it first.
func Dial(ctx context.Context, url string, opt DialOptions) (*Client, error) {
	d := websocket.Dialer{
		HandshakeTimeout: opt.HandshakeTimeout,
		NetDialContext:   opt.NetDialContext,
		Proxy:            http.ProxyFromEnvironment,
		ReadBufferSize:   opt.BufferSize,
		WriteBufferSize:  opt.BufferSize,
	}
	if d.HandshakeTimeout == 0 {
		d.HandshakeTimeout = 10 * time.Second
	}
	hdr := opt.Header.Clone()
	if opt.Origin != "" {
		if hdr == nil {
			hdr = http.Header{}
		}
		hdr.Set("Origin", opt.Origin)
	}
	ws, resp, err := d.DialContext(ctx, url, hdr)
	if err != nil {
		return nil, &DialError{URL: url, Response: resp, Err: err}
	}
	return &Client{ws: ws, writeTimeout: opt.WriteTimeout}, nil
}

// NewClient wraps a socket the caller dialled itself (through a dialer
// Dial does not offer); the Client owns it from then on.
func NewClient(ws *websocket.Conn) *Client { return &Client{ws: ws} }

// Send encodes v (a Request, or any value that encodes as a client
// message) as one text frame.
func (c *Client) Send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %T: %w", v, err)
	}
	return c.SendRaw(b)
}

// SendRaw sends frame as one text frame, byte for byte: prebuilt frames,
// and frames the node must refuse.
func (c *Client) SendRaw(frame []byte) error {
	return c.write(websocket.TextMessage, frame)
}

// SendBinary sends b as a binary frame (the node refuses those).
func (c *Client) SendBinary(b []byte) error {
	return c.write(websocket.BinaryMessage, b)
}

func (c *Client) write(kind int, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.writeTimeout > 0 {
		_ = c.ws.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	}
	if err := c.ws.WriteMessage(kind, b); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

// Next reads and decodes the node's next message. ctx bounds the wait;
// after a timeout the socket is unusable (as with any WebSocket read
// deadline), so a test that expects silence should end with it.
func (c *Client) Next(ctx context.Context) (*Message, error) {
	b, err := c.NextFrame(ctx)
	if err != nil {
		return nil, err
	}
	return ParseMessage(b)
}

// NextFrame reads the next text frame undecoded, for readers that look at
// part of it only (a load generator, say).
func (c *Client) NextFrame(ctx context.Context) ([]byte, error) {
	if d, ok := ctx.Deadline(); ok {
		_ = c.ws.SetReadDeadline(d)
		defer func() { _ = c.ws.SetReadDeadline(time.Time{}) }()
	}
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { _ = c.ws.SetReadDeadline(time.Unix(1, 0)) })
		defer stop()
	}
	_, b, err := c.ws.ReadMessage()
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("read: %w (%w)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("read: %w", err)
	}
	return b, nil
}

// Expect reads the next message and fails unless its type is typ; an
// error message from the node says so in the returned error.
func (c *Client) Expect(ctx context.Context, typ string) (*Message, error) {
	m, err := c.Next(ctx)
	if err != nil {
		return nil, fmt.Errorf("waiting for %s: %w", typ, err)
	}
	if m.Type != typ {
		return m, fmt.Errorf("got %s, want type %q", m.Raw, typ)
	}
	return m, nil
}

// Queue asks for a stranger.
func (c *Client) Queue(mode string, interests ...string) error {
	return c.Send(Request{Type: TypeQueue, Mode: mode, Interests: interests})
}

// Cancel stops waiting.
func (c *Client) Cancel() error { return c.Send(Request{Type: TypeCancel}) }

// Ready says the client will take the room's signals now.
func (c *Client) Ready(room string) error { return c.Send(Request{Type: TypeReady, Room: room}) }

// Offer and Answer send a session description; leg is "" or LegSFU.
func (c *Client) Offer(room, sdp, leg string) error {
	return c.Send(Request{Type: TypeOffer, Room: room, SDP: sdp, Leg: leg})
}

// Answer: see Offer.
func (c *Client) Answer(room, sdp, leg string) error {
	return c.Send(Request{Type: TypeAnswer, Room: room, SDP: sdp, Leg: leg})
}

// Candidate trickles one candidate; nil ends them.
func (c *Client) Candidate(room string, cand *ICECandidate, leg string) error {
	return c.Send(candidateRequest{Type: TypeCandidate, Room: room, Candidate: cand, Leg: leg})
}

// Chat writes to the stranger.
func (c *Client) Chat(room, text string) error {
	return c.Send(Request{Type: TypeChat, Room: room, Text: &text})
}

// Typing says the client started or stopped typing.
func (c *Client) Typing(room string, on bool) error {
	return c.Send(Request{Type: TypeTyping, Room: room, On: &on})
}

// Skip sends `next`: a new stranger.
func (c *Client) Skip() error { return c.Send(Request{Type: TypeNext}) }

// Leave ends the room or the wait.
func (c *Client) Leave() error { return c.Send(Request{Type: TypeLeave}) }

// Report reports the stranger of room.
func (c *Client) Report(room, reason string) error {
	return c.Send(Request{Type: TypeReport, Room: room, Reason: reason})
}

// Fallback asks the node to carry the room's media through its SFU.
func (c *Client) Fallback(room, reason string) error {
	return c.Send(Request{Type: TypeFallback, Room: room, Reason: reason})
}

// CloseCode reads until the node closes the socket and returns the close
// frame's code; an end without a close frame is an error.
func (c *Client) CloseCode(ctx context.Context) (int, error) {
	for {
		_, err := c.NextFrame(ctx)
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code, nil
		}
		return 0, fmt.Errorf("socket ended without a close frame: %w", err)
	}
}

// CloseNormally ends the session as a closing tab does: a normal close
// frame, then the connection.
func (c *Client) CloseNormally() error {
	c.wmu.Lock()
	err := c.ws.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.wmu.Unlock()
	if cerr := c.ws.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("close: %w", err)
	}
	return nil
}

// Close cuts the connection without a close frame, as a dropped network
// does: the node keeps the session for its resume grace.
func (c *Client) Close() error { return c.ws.Close() }

// LocalAddr is the client's end of the connection.
func (c *Client) LocalAddr() net.Addr { return c.ws.LocalAddr() }
