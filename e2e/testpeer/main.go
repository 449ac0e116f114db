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
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/duetchat/duet/wire"
)

type result struct {
	Connected bool   `json:"connected"`
	Room      string `json:"room"`
	Local     string `json:"local"`  // selected pair: local candidate type
	Remote    string `json:"remote"` // selected pair: remote candidate type
	Packets   int64  `json:"packets_received"`
	Path      string `json:"path"`     // p2p, or sfu after the fallback
	Protocol  string `json:"protocol"` // of the selected pair: udp or tcp
	// LocalAddr and RemoteAddr are the selected pair's addresses
	// (ip:port): a relay candidate's is the TURN relay's, the SFU's
	// remote one what the node advertises.
	LocalAddr  string `json:"local_addr"`
	RemoteAddr string `json:"remote_addr"`
	// RemoteCandidates are the candidates the other end of the current
	// leg sent ("udp 198.51.100.1:8443 host"): on the SFU leg, the node's.
	RemoteCandidates []string `json:"remote_candidates,omitempty"`
	Error            string   `json:"error,omitempty"`
}

func main() {
	wsURL := flag.String("ws", "", "duet WebSocket URL, e.g. ws://198.51.100.1:8080/ws")
	stunOnly := flag.Bool("stun-only", false, "drop TURN URLs from matched.ice_servers (proves a NAT is symmetric)")
	connectTimeout := flag.Duration("connect-timeout", 20*time.Second, "give up on ICE after this")
	hold := flag.Duration("hold", 4*time.Second, "keep media flowing this long after connecting")
	fallback := flag.Bool("fallback", false, "on ICE failure or past -p2p-timeout, ask for the SFU fallback as the browser client does")
	p2pTimeout := flag.Duration("p2p-timeout", 8*time.Second, "with -fallback: the P2P budget")
	relayOnly := flag.Bool("relay-only", false, "use relay candidates only (iceTransportPolicy relay)")
	turnTransport := flag.String("turn-transport", "", "udp or tcp: keep only the TURN URLs of this transport")
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
	if *turnTransport != "" && *turnTransport != "udp" && *turnTransport != "tcp" {
		fmt.Fprintln(os.Stderr, "testpeer: -turn-transport is udp or tcp")
		os.Exit(2)
	}
	res := run(ctx, *wsURL, options{stunOnly: *stunOnly, fallback: *fallback, connectTimeout: *connectTimeout, hold: *hold, p2pTime: *p2pTimeout,
		relayOnly: *relayOnly, turnTransport: *turnTransport})
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

// peer holds one session's state.
type peer struct {
	sock    *wire.Client
	cmu     sync.Mutex
	c       *conn
	room    string
	pending []webrtc.ICECandidateInit // candidates before the remote description
	remote  []string                  // the current leg's remote candidates, summarised
	packets atomic.Int64
}

type options struct {
	stunOnly, fallback, relayOnly bool
	turnTransport                 string
	connectTimeout, hold, p2pTime time.Duration
}

// conn is the current media connection: to the stranger, or after the
// fallback to the node's SFU (leg "sfu").
type conn struct {
	pc        *webrtc.PeerConnection
	track     atomic.Pointer[webrtc.TrackLocalStaticSample] // set by addTrack, read by the media loop
	sender    atomic.Pointer[webrtc.RTPSender]
	leg       string
	connected chan struct{}
	failed    chan struct{}
}

// newConn builds a connection with one outgoing VP8 track. The SFU leg may
// use TCP (ICE-TCP to the node) where UDP is blocked.
func (p *peer) newConn(cfg webrtc.Configuration, leg string) (*conn, error) {
	se := webrtc.SettingEngine{}
	if leg == "sfu" {
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeTCP4})
		// Answer the node's offer as the DTLS client (a=setup:active), as
		// Chromium and Firefox do. Left alone, pion answers passive to an
		// ICE-lite offerer and becomes the DTLS server; as the client it
		// makes the node the DTLS server, the role in which the SFU's
		// shortcut (duet_sfu_shortcut_packets_total) forwards UDP media.
		// P2P legs keep pion's default, which answers a pion offer active
		// anyway.
		if err := se.SetAnsweringDTLSRole(webrtc.DTLSRoleClient); err != nil {
			return nil, err
		}
	}
	m := &webrtc.MediaEngine{}
	if err := m.RegisterDefaultCodecs(); err != nil {
		return nil, err
	}
	reg := &interceptor.Registry{}
	if err := webrtc.RegisterDefaultInterceptors(m, reg); err != nil {
		return nil, err
	}
	pc, err := webrtc.NewAPI(webrtc.WithMediaEngine(m), webrtc.WithInterceptorRegistry(reg), webrtc.WithSettingEngine(se)).NewPeerConnection(cfg)
	if err != nil {
		return nil, err
	}
	c := &conn{pc: pc, leg: leg, connected: make(chan struct{}), failed: make(chan struct{})}
	if leg == "" {
		// P2P: we bring the track. On the SFU leg the node's offer brings
		// the transceivers and the track is added when answering.
		if err := c.addTrack(); err != nil {
			_ = pc.Close()
			return nil, err
		}
	}
	pc.OnTrack(func(t *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
		for {
			if _, _, err := t.ReadRTP(); err != nil {
				return
			}
			p.packets.Add(1)
		}
	})
	pc.OnICECandidate(func(ic *webrtc.ICECandidate) {
		var cand *wire.ICECandidate
		if ic != nil {
			j := ic.ToJSON()
			cand = &wire.ICECandidate{Candidate: j.Candidate, SDPMid: j.SDPMid, SDPMLineIndex: j.SDPMLineIndex, UsernameFragment: j.UsernameFragment}
		}
		_ = p.sock.Candidate(p.room, cand, leg)
	})
	var once, failOnce sync.Once
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch st {
		case webrtc.PeerConnectionStateConnected:
			once.Do(func() { close(c.connected) })
		case webrtc.PeerConnectionStateFailed:
			failOnce.Do(func() { close(c.failed) })
		}
	})
	return c, nil
}

func (c *conn) addTrack() error {
	track, err := webrtc.NewTrackLocalStaticSample(webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8}, "video", "testpeer")
	if err != nil {
		return err
	}
	sender, err := c.pc.AddTrack(track)
	if err != nil {
		return err
	}
	c.track.Store(track)
	c.sender.Store(sender)
	// Read RTCP so the sender's interceptors (NACK, reports) run.
	go func() {
		buf := make([]byte, 1500)
		for {
			if _, _, err := sender.Read(buf); err != nil {
				return
			}
		}
	}()
	return nil
}

func run(ctx context.Context, url string, opt options) (res result) {
	fail := func(err error) result { res.Error = err.Error(); return res }
	sock, err := wire.Dial(ctx, url, wire.DialOptions{WriteTimeout: 5 * time.Second})
	if err != nil {
		return fail(err)
	}
	defer sock.Close()
	p := &peer{sock: sock}
	msgs := make(chan *wire.Message, 64)
	go func() {
		defer close(msgs)
		for {
			m, err := sock.Next(context.Background()) // Close ends the wait
			if err != nil {
				return
			}
			msgs <- m
		}
	}()
	if err := sock.Queue(wire.ModeVideo); err != nil {
		return fail(err)
	}
	matched := &wire.Message{}
	for matched.Type != wire.TypeMatched {
		select {
		case m, ok := <-msgs:
			if !ok {
				return fail(errors.New("socket closed before matched"))
			}
			if m.Type == wire.TypeError {
				return fail(fmt.Errorf("server error %s: %s", m.Code, m.Message))
			}
			matched = m
		case <-ctx.Done():
			return fail(errors.New("never matched"))
		}
	}
	p.room, res.Room, res.Path = matched.Room, matched.Room, wire.MediaP2P

	servers := iceServers(matched.ICEServers)
	if opt.stunOnly {
		all := servers
		servers = nil
		for _, s := range all {
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
	if opt.turnTransport != "" {
		servers = turnServers(servers, opt.turnTransport)
	}
	cfg := webrtc.Configuration{ICEServers: servers}
	if matched.ICETransportPolicy == "relay" || opt.relayOnly {
		cfg.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	c, err := p.newConn(cfg, "")
	if err != nil {
		return fail(err)
	}
	p.c = c
	defer func() { _ = p.c.pc.Close() }()
	if err := sock.Ready(p.room); err != nil {
		return fail(err)
	}
	if matched.Role == wire.RoleOfferer {
		offer, err := c.pc.CreateOffer(nil)
		if err != nil {
			return fail(err)
		}
		if err := c.pc.SetLocalDescription(offer); err != nil {
			return fail(err)
		}
		if err := sock.Offer(p.room, offer.SDP, ""); err != nil {
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
				if t := p.currentTrack(); t != nil {
					_ = t.WriteSample(media.Sample{Data: frame, Duration: 20 * time.Millisecond})
				}
			}
		}
	}()

	snapshot := func() result {
		res.Packets = p.packets.Load()
		if s := p.current().sender.Load(); s != nil {
			if pair, err := s.Transport().ICETransport().GetSelectedCandidatePair(); err == nil && pair != nil {
				res.Local, res.Remote = pair.Local.Typ.String(), pair.Remote.Typ.String()
				res.Protocol = pair.Local.Protocol.String()
				res.LocalAddr = net.JoinHostPort(pair.Local.Address, strconv.Itoa(int(pair.Local.Port)))
				res.RemoteAddr = net.JoinHostPort(pair.Remote.Address, strconv.Itoa(int(pair.Remote.Port)))
			}
		}
		p.cmu.Lock()
		res.RemoteCandidates = append([]string(nil), p.remote...)
		p.cmu.Unlock()
		return res
	}
	deadline := time.NewTimer(opt.connectTimeout)
	defer deadline.Stop()
	var p2pBudget <-chan time.Time
	if opt.fallback {
		p2pBudget = time.After(opt.p2pTime)
	}
	askedFallback := false
	askFallback := func(reason string) error {
		if askedFallback {
			return nil
		}
		askedFallback = true
		p2pBudget = nil
		fmt.Fprintln(os.Stderr, "testpeer: asking for the fallback:", reason)
		return sock.Fallback(p.room, reason)
	}
	var holdDone <-chan time.Time
	for {
		cur := p.current()
		connectedCh, failedCh := cur.connected, cur.failed
		if res.Connected {
			connectedCh = nil
		}
		if askedFallback && cur.leg == "" {
			failedCh = nil // the fallback is under way
		}
		select {
		case m, ok := <-msgs:
			if !ok {
				return fail(errors.New("socket closed"))
			}
			if m.Type == wire.TypeMedia && m.Mode == wire.MediaSFU {
				// Close the P2P connection; the node's offer comes next.
				fmt.Fprintln(os.Stderr, "testpeer: media sfu")
				nc, err := p.newConn(webrtc.Configuration{}, wire.LegSFU)
				if err != nil {
					return fail(err)
				}
				old := p.swap(nc)
				// Closing may wait on TURN allocations that never came.
				go func() { _ = old.pc.Close() }()
				res.Path = wire.MediaSFU
				p.packets.Store(0) // count what comes through the SFU
				continue
			}
			if err := p.handle(m); err != nil {
				if errors.Is(err, errStrangerLeft) && res.Connected {
					// The stranger's hold ended first (its side saw
					// "connected" earlier); report what this side got.
					return snapshot()
				}
				return fail(err)
			}
		case <-connectedCh:
			fmt.Fprintln(os.Stderr, "testpeer: connected on leg", cur.leg)
			res.Connected = true
			holdDone = time.After(opt.hold)
			deadline.Stop()
			p2pBudget = nil
		case <-failedCh:
			if opt.fallback && cur.leg == "" {
				if err := askFallback("ice failed"); err != nil {
					return fail(err)
				}
				continue
			}
			return fail(errors.New("ICE failed"))
		case <-p2pBudget:
			if err := askFallback("p2p timeout"); err != nil {
				return fail(err)
			}
		case <-deadline.C:
			return fail(errors.New("ICE did not connect in time"))
		case <-holdDone:
			_ = sock.Leave()
			return snapshot()
		case <-ctx.Done():
			return fail(ctx.Err())
		}
	}
}

func (p *peer) current() *conn {
	p.cmu.Lock()
	defer p.cmu.Unlock()
	return p.c
}

func (p *peer) currentTrack() *webrtc.TrackLocalStaticSample {
	p.cmu.Lock()
	defer p.cmu.Unlock()
	return p.c.track.Load()
}

func (p *peer) swap(c *conn) *conn {
	p.cmu.Lock()
	defer p.cmu.Unlock()
	old := p.c
	p.c = c
	p.pending = nil
	p.remote = nil
	return old
}

var errStrangerLeft = errors.New("stranger left")

func (p *peer) handle(m *wire.Message) error {
	if m.Room != "" && m.Room != p.room {
		return nil
	}
	c := p.current()
	if (m.Type == wire.TypeOffer || m.Type == wire.TypeAnswer || m.Type == wire.TypeCandidate) && m.Leg != c.leg {
		return nil // the other leg's late signals
	}
	switch m.Type {
	case wire.TypeOffer:
		for _, l := range strings.Split(m.SDP, "\n") {
			if cand, ok := strings.CutPrefix(strings.TrimSpace(l), "a=candidate:"); ok {
				p.noteRemote(cand)
			}
		}
		if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.SDP}); err != nil {
			return fmt.Errorf("remote offer: %w", err)
		}
		if c.track.Load() == nil {
			// The SFU's offer brought sendrecv transceivers: send on them.
			if err := c.addTrack(); err != nil {
				return err
			}
		}
		if err := p.flush(); err != nil {
			return err
		}
		answer, err := c.pc.CreateAnswer(nil)
		if err != nil {
			return err
		}
		if err := c.pc.SetLocalDescription(answer); err != nil {
			return err
		}
		return p.sock.Answer(p.room, answer.SDP, c.leg)
	case wire.TypeAnswer:
		if err := c.pc.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.SDP}); err != nil {
			return fmt.Errorf("remote answer: %w", err)
		}
		return p.flush()
	case wire.TypeCandidate:
		if m.Candidate == nil {
			return nil // end of candidates
		}
		p.noteRemote(strings.TrimPrefix(m.Candidate.Candidate, "candidate:"))
		init := webrtc.ICECandidateInit{Candidate: m.Candidate.Candidate, SDPMid: m.Candidate.SDPMid,
			SDPMLineIndex: m.Candidate.SDPMLineIndex, UsernameFragment: m.Candidate.UsernameFragment}
		if c.pc.RemoteDescription() == nil {
			p.pending = append(p.pending, init)
			return nil
		}
		return c.pc.AddICECandidate(init)
	case wire.TypePeerLeft:
		return errStrangerLeft
	case wire.TypeError:
		return fmt.Errorf("server error %s: %s", m.Code, m.Message)
	}
	return nil
}

func (p *peer) flush() error {
	pc := p.current().pc
	for _, c := range p.pending {
		if err := pc.AddICECandidate(c); err != nil {
			return fmt.Errorf("candidate: %w", err)
		}
	}
	p.pending = nil
	return nil
}

// noteRemote keeps "proto ip:port typ" of a remote candidate line
// ("foundation component proto priority ip port typ host ...").
func (p *peer) noteRemote(line string) {
	f := strings.Fields(line)
	if len(f) < 8 || f[6] != "typ" {
		return
	}
	p.cmu.Lock()
	defer p.cmu.Unlock()
	p.remote = append(p.remote, strings.ToLower(f[2])+" "+net.JoinHostPort(f[4], f[5])+" "+f[7])
}

// iceServers is matched.ice_servers as pion takes them.
func iceServers(in []wire.ICEServer) []webrtc.ICEServer {
	out := make([]webrtc.ICEServer, 0, len(in))
	for _, s := range in {
		is := webrtc.ICEServer{URLs: s.URLs, Username: s.Username}
		if s.Credential != "" {
			is.Credential = s.Credential // pion tells a missing one by nil
		}
		out = append(out, is)
	}
	return out
}

// turnServers keeps the TURN URLs of one transport ("udp" or "tcp") and
// drops everything else, STUN included.
func turnServers(in []webrtc.ICEServer, transport string) []webrtc.ICEServer {
	var out []webrtc.ICEServer
	for _, s := range in {
		var urls []string
		for _, u := range s.URLs {
			if !strings.HasPrefix(u, "turn:") {
				continue
			}
			t := "udp" // RFC 7065: no transport parameter means UDP
			if _, q, ok := strings.Cut(u, "?"); ok {
				if v, ok := strings.CutPrefix(q, "transport="); ok {
					t = v
				}
			}
			if t == transport {
				urls = append(urls, u)
			}
		}
		if len(urls) > 0 {
			s.URLs = urls
			out = append(out, s)
		}
	}
	return out
}
