package wire

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// peer is the far end of a Client under test: a real WebSocket server
// that hands over what it reads and writes what it is given.
type peer struct {
	url    string
	origin chan string
	frames chan []byte
	out    chan []byte
}

func newPeer(t *testing.T) *peer {
	t.Helper()
	p := &peer{origin: make(chan string, 1), frames: make(chan []byte, 16), out: make(chan []byte, 16)}
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("refuse") != "" {
			w.Header().Set("Retry-After", "7")
			http.Error(w, "no", http.StatusTooManyRequests)
			return
		}
		p.origin <- r.Header.Get("Origin")
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		go func() {
			for b := range p.out {
				if b == nil {
					_ = ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4001, "bye"))
					return
				}
				_ = ws.WriteMessage(websocket.TextMessage, b)
			}
		}()
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				return
			}
			p.frames <- b
		}
	}))
	t.Cleanup(srv.Close)
	p.url = "ws" + strings.TrimPrefix(srv.URL, "http")
	return p
}

func (p *peer) read(t *testing.T) []byte {
	t.Helper()
	select {
	case b := <-p.frames:
		return b
	case <-time.After(5 * time.Second):
		t.Fatal("the peer read nothing in 5 s")
		return nil
	}
}

func dialPeer(t *testing.T, p *peer) *Client {
	t.Helper()
	c, err := Dial(context.Background(), p.url, DialOptions{Origin: "https://duet.example"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if got := <-p.origin; got != "https://duet.example" {
		t.Fatalf("Origin %q, want https://duet.example", got)
	}
	return c
}

// TestClientRequests: every helper's frame is what the node's own decoder
// takes, with the fields the helper was given.
func TestClientRequests(t *testing.T) {
	p := newPeer(t)
	c := dialPeer(t, p)
	str := func(s string) *string { return &s }
	yes := true
	mid, idx := "0", uint16(1)
	cand := &ICECandidate{Candidate: "candidate:1 1 udp 1 192.0.2.1 9 typ host", SDPMid: &mid, SDPMLineIndex: &idx}
	tests := []struct {
		name string
		send func() error
		want Inbound
		cand *ICECandidate
	}{
		{"queue", func() error { return c.Queue(ModeVideo, "music", "art") }, Inbound{Type: TypeQueue, Mode: ModeVideo, Interests: []string{"music", "art"}}, nil},
		{"queue no interests", func() error { return c.Queue(ModeText) }, Inbound{Type: TypeQueue, Mode: ModeText}, nil},
		{"cancel", c.Cancel, Inbound{Type: TypeCancel}, nil},
		{"ready", func() error { return c.Ready("r1") }, Inbound{Type: TypeReady, Room: str("r1")}, nil},
		{"offer", func() error { return c.Offer("r1", "v=0\r\n", "") }, Inbound{Type: TypeOffer, Room: str("r1"), SDP: str("v=0\r\n")}, nil},
		{"answer sfu", func() error { return c.Answer("r1", "v=0", LegSFU) }, Inbound{Type: TypeAnswer, Room: str("r1"), SDP: str("v=0"), Leg: LegSFU}, nil},
		{"candidate", func() error { return c.Candidate("r1", cand, "") }, Inbound{Type: TypeCandidate, Room: str("r1")}, cand},
		{"end of candidates", func() error { return c.Candidate("r1", nil, "") }, Inbound{Type: TypeCandidate, Room: str("r1")}, nil},
		{"chat", func() error { return c.Chat("r1", "hi \"there\"") }, Inbound{Type: TypeChat, Room: str("r1"), Text: str("hi \"there\"")}, nil},
		{"empty chat keeps its text", func() error { return c.Chat("r1", "") }, Inbound{Type: TypeChat, Room: str("r1"), Text: str("")}, nil},
		{"typing off keeps on", func() error { return c.Typing("r1", false) }, Inbound{Type: TypeTyping, Room: str("r1"), On: new(bool)}, nil},
		{"next", c.Skip, Inbound{Type: TypeNext}, nil},
		{"leave", c.Leave, Inbound{Type: TypeLeave}, nil},
		{"report", func() error { return c.Report("r1", "spam") }, Inbound{Type: TypeReport, Room: str("r1"), Reason: "spam"}, nil},
		{"fallback", func() error { return c.Fallback("r1", "ice") }, Inbound{Type: TypeFallback, Room: str("r1"), Reason: "ice"}, nil},
		{"request with face", func() error { return c.Send(Request{Type: TypeQueue, Mode: ModeVideo, Face: &yes}) }, Inbound{Type: TypeQueue, Mode: ModeVideo, Face: &yes}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.send(); err != nil {
				t.Fatal(err)
			}
			frame := p.read(t)
			m, e := Decode(frame)
			if e != nil {
				t.Fatalf("node refuses %s: %v", frame, e)
			}
			got := *m
			if tt.want.Type == TypeCandidate {
				c, e := ParseCandidate(got.Candidate)
				if e != nil || !reflect.DeepEqual(c, tt.cand) {
					t.Fatalf("candidate %s: %+v %v, want %+v", got.Candidate, c, e, tt.cand)
				}
				got.Candidate = nil
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("%s decodes as\n %+v, want\n %+v", frame, got, tt.want)
			}
		})
	}
}

// TestClientReads: Next decodes the node's messages and keeps the frame;
// a context ends a wait; CloseCode reports the node's close code.
func TestClientReads(t *testing.T) {
	p := newPeer(t)
	c := dialPeer(t, p)
	p.out <- Encode(MatchedMsg{Type: TypeMatched, Room: "r", Role: RoleOfferer, Mode: ModeVideo,
		CommonInterests: []string{"a"}, ICEServers: []ICEServer{{URLs: []string{"stun:x"}}}, Media: MediaP2P, P2PTimeoutMS: 9})
	p.out <- Encode(ErrorMsg{Type: TypeError, Code: CodeBanned, Message: "m", Ref: TypeQueue, Until: 42})
	p.out <- []byte(`{"type":"chat","room":"r","text":"x","at":7,"future":{"k":1}}`)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	m, err := c.Expect(ctx, TypeMatched)
	if err != nil {
		t.Fatal(err)
	}
	if m.Room != "r" || m.Role != RoleOfferer || m.Media != MediaP2P || m.P2PTimeoutMS != 9 ||
		!reflect.DeepEqual(m.CommonInterests, []string{"a"}) || m.ICEServers[0].URLs[0] != "stun:x" {
		t.Fatalf("matched decoded as %+v", m)
	}
	if m, err = c.Next(ctx); err != nil || m.Code != CodeBanned || m.Ref != TypeQueue || m.Until != 42 || m.Message != "m" {
		t.Fatalf("error decoded as %+v, %v", m, err)
	}
	if _, err = c.Expect(ctx, TypeIdle); err == nil || !strings.Contains(err.Error(), `"future"`) {
		t.Fatalf("Expect(idle) on a chat: %v, want an error quoting the frame", err)
	}

	short, cancelShort := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancelShort)
	if _, err := c.Next(short); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next after cancel: %v, want context.Canceled", err)
	}

	p2 := newPeer(t)
	c2 := dialPeer(t, p2)
	p2.out <- nil
	if code, err := c2.CloseCode(ctx); err != nil || code != 4001 {
		t.Fatalf("CloseCode = %d, %v; want 4001", code, err)
	}
}

// TestDialRefused: a refused handshake is a DialError with the node's
// answer.
func TestDialRefused(t *testing.T) {
	p := newPeer(t)
	_, err := Dial(context.Background(), p.url+"?refuse=1", DialOptions{})
	var de *DialError
	if !errors.As(err, &de) || de.StatusCode() != http.StatusTooManyRequests || de.Response.Header.Get("Retry-After") != "7" {
		t.Fatalf("Dial = %v, want a DialError with 429 and Retry-After", err)
	}
}
