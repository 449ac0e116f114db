// Command testpeer is a scripted duet client for network tests: it speaks
// the signalling protocol over a real WebSocket, connects a real pion
// PeerConnection to its stranger, sends synthetic video and reports, as
// one JSON line on stdout, whether ICE connected, which candidate types
// the selected pair has, and how many RTP packets it received. Tests run
// it inside network namespaces (`ip netns exec`), which a goroutine of the
// test process itself cannot enter reliably.
//
// With -get it instead prints the body of one HTTP GET (with -token as a
// bearer token), so a test can read the admin API from inside a namespace.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
)

type result struct {
	Connected bool   `json:"connected"`
	Room      string `json:"room"`
	Local     string `json:"local"`  // selected pair: local candidate type
	Remote    string `json:"remote"` // selected pair: remote candidate type
	Packets   int64  `json:"packets_received"`
	Error     string `json:"error,omitempty"`
}

func main() {
	wsURL := flag.String("ws", "", "duet WebSocket URL, e.g. ws://198.51.100.1:8080/ws")
	stunOnly := flag.Bool("stun-only", false, "drop TURN URLs from matched.ice_servers (proves a NAT is symmetric)")
	connectTimeout := flag.Duration("connect-timeout", 20*time.Second, "give up on ICE after this")
	hold := flag.Duration("hold", 4*time.Second, "keep media flowing this long after connecting")
	get := flag.String("get", "", "print the body of GET URL and exit")
	token := flag.String("token", "", "bearer token for -get")
	flag.Parse()
	if *get != "" {
		os.Exit(httpGet(*get, *token))
	}
	if *wsURL == "" {
		fmt.Fprintln(os.Stderr, "testpeer: -ws is required")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *connectTimeout+*hold+30*time.Second)
	defer cancel()
	res := run(ctx, *wsURL, *stunOnly, *connectTimeout, *hold)
	_ = json.NewEncoder(os.Stdout).Encode(res)
}

func httpGet(url, token string) int {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	_, _ = io.Copy(os.Stdout, resp.Body)
	if resp.StatusCode != 200 {
		return 1
	}
	return 0
}

// peer holds one session's state; ws writes are serialised by wmu.
type peer struct {
	ws      *websocket.Conn
	wmu     sync.Mutex
	pc      *webrtc.PeerConnection
	room    string
	pending []webrtc.ICECandidateInit // candidates before the remote description
	packets atomic.Int64
}

func (p *peer) send(v any) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_ = p.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return p.ws.WriteJSON(v)
}

type wire struct {
	Type       string                   `json:"type"`
	Room       string                   `json:"room"`
	Role       string                   `json:"role"`
	SDP        string                   `json:"sdp"`
	Candidate  *webrtc.ICECandidateInit `json:"candidate"`
	ICEServers []webrtc.ICEServer       `json:"ice_servers"`
	Policy     string                   `json:"ice_transport_policy"`
	Code       string                   `json:"code"`
	Message    string                   `json:"message"`
}

func run(ctx context.Context, url string, stunOnly bool, connectTimeout, hold time.Duration) (res result) {
	fail := func(err error) result { res.Error = err.Error(); return res }
	ws, _, err := websocket.DefaultDialer.DialContext(ctx, url, nil)
	if err != nil {
		return fail(fmt.Errorf("dial: %w", err))
	}
	defer ws.Close()
	p := &peer{ws: ws}
	msgs := make(chan wire, 64)
	go func() {
		defer close(msgs)
		for {
			var m wire
			if err := ws.ReadJSON(&m); err != nil {
				return
			}
			msgs <- m
		}
	}()
	if err := p.send(map[string]any{"type": "queue", "mode": "video"}); err != nil {
		return fail(err)
	}
	var matched wire
	for matched.Type != "matched" {
		select {
		case m, ok := <-msgs:
			if !ok {
				return fail(errors.New("socket closed before matched"))
			}
			if m.Type == "error" {
				return fail(fmt.Errorf("server error %s: %s", m.Code, m.Message))
			}
			matched = m
		case <-ctx.Done():
			return fail(errors.New("never matched"))
		}
	}
	p.room, res.Room = matched.Room, matched.Room

	servers := matched.ICEServers
	if stunOnly {
		servers = nil
		for _, s := range matched.ICEServers {
			var urls []string
			for _, u := range s.URLs {
				if strings.HasPrefix(u, "stun:") {
					urls = append(urls, u)
				}
			}
			if len(urls) > 0 {
				servers = append(servers, webrtc.ICEServer{URLs: urls})
			}
		}
	}
	cfg := webrtc.Configuration{ICEServers: servers}
	if matched.Policy == "relay" {
		cfg.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	pc, err := webrtc.NewPeerConnection(cfg)
	if err != nil {
		return fail(err)
	}
	defer pc.Close()
	p.pc = pc

	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "testpeer")
	if err != nil {
		return fail(err)
	}
	sender, err := pc.AddTrack(track)
	if err != nil {
		return fail(err)
	}
	// Read RTCP so the sender's interceptors (NACK, reports) run.
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Read(buf); err != nil {
				return
			}
		}
	}()
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			if _, _, err := t.ReadRTP(); err != nil {
				return
			}
			p.packets.Add(1)
		}
	})
	pc.OnICECandidate(func(c *webrtc.ICECandidate) {
		var init *webrtc.ICECandidateInit
		if c != nil {
			j := c.ToJSON()
			init = &j
		}
		_ = p.send(map[string]any{"type": "candidate", "room": p.room, "candidate": init})
	})
	connected := make(chan struct{})
	failed := make(chan struct{})
	var once, failOnce sync.Once
	pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
		switch s {
		case webrtc.PeerConnectionStateConnected:
			once.Do(func() { close(connected) })
		case webrtc.PeerConnectionStateFailed:
			failOnce.Do(func() { close(failed) })
		}
	})
	if err := p.send(map[string]any{"type": "ready", "room": p.room}); err != nil {
		return fail(err)
	}
	if matched.Role == "offerer" {
		offer, err := pc.CreateOffer(nil)
		if err != nil {
			return fail(err)
		}
		if err := pc.SetLocalDescription(offer); err != nil {
			return fail(err)
		}
		if err := p.send(map[string]any{"type": "offer", "room": p.room, "sdp": offer.SDP}); err != nil {
			return fail(err)
		}
	}

	stopMedia := make(chan struct{})
	defer close(stopMedia)
	go func() {
		frame := make([]byte, 1000)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stopMedia:
				return
			case <-tick.C:
				_ = track.WriteSample(media.Sample{Data: frame, Duration: 20 * time.Millisecond})
			}
		}
	}()

	snapshot := func() result {
		res.Packets = p.packets.Load()
		if pair, err := sender.Transport().ICETransport().GetSelectedCandidatePair(); err == nil && pair != nil {
			res.Local, res.Remote = pair.Local.Typ.String(), pair.Remote.Typ.String()
		}
		return res
	}
	deadline := time.NewTimer(connectTimeout)
	defer deadline.Stop()
	var holdDone <-chan time.Time
	for {
		select {
		case m, ok := <-msgs:
			if !ok {
				return fail(errors.New("socket closed"))
			}
			if err := p.handle(m); err != nil {
				if errors.Is(err, errStrangerLeft) && res.Connected {
					// The stranger's hold ended first (its side saw
					// "connected" earlier); report what this side got.
					return snapshot()
				}
				return fail(err)
			}
		case <-connected:
			connected = nil
			res.Connected = true
			holdDone = time.After(hold)
			deadline.Stop()
		case <-failed:
			return fail(errors.New("ICE failed"))
		case <-deadline.C:
			return fail(errors.New("ICE did not connect in time"))
		case <-holdDone:
			_ = p.send(map[string]any{"type": "leave"})
			return snapshot()
		case <-ctx.Done():
			return fail(ctx.Err())
		}
	}
}

var errStrangerLeft = errors.New("stranger left")

func (p *peer) handle(m wire) error {
	if m.Room != "" && m.Room != p.room {
		return nil
	}
	switch m.Type {
	case "offer":
		if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.SDP}); err != nil {
			return fmt.Errorf("remote offer: %w", err)
		}
		if err := p.flush(); err != nil {
			return err
		}
		answer, err := p.pc.CreateAnswer(nil)
		if err != nil {
			return err
		}
		if err := p.pc.SetLocalDescription(answer); err != nil {
			return err
		}
		return p.send(map[string]any{"type": "answer", "room": p.room, "sdp": answer.SDP})
	case "answer":
		if err := p.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.SDP}); err != nil {
			return fmt.Errorf("remote answer: %w", err)
		}
		return p.flush()
	case "candidate":
		if m.Candidate == nil {
			return nil // end of candidates
		}
		if p.pc.RemoteDescription() == nil {
			p.pending = append(p.pending, *m.Candidate)
			return nil
		}
		return p.pc.AddICECandidate(*m.Candidate)
	case "peer_left":
		return errStrangerLeft
	case "error":
		return fmt.Errorf("server error %s: %s", m.Code, m.Message)
	}
	return nil
}

func (p *peer) flush() error {
	for _, c := range p.pending {
		if err := p.pc.AddICECandidate(c); err != nil {
			return fmt.Errorf("candidate: %w", err)
		}
	}
	p.pending = nil
	return nil
}
