package node

import (
	"net"
	"strings"
	"testing"
	"time"

	pturn "github.com/pion/turn/v4"

	"github.com/duetchat/duet/turn"
	"github.com/duetchat/duet/wire"
)

// matchedPair queues two fresh clients for video and returns their
// matched messages, offerer first.
func matchedPair(t *testing.T, n *testNode) (a, b *client, ma, mb msg) {
	t.Helper()
	a, b = dial(t, n.ws, "a", nil), dial(t, n.ws, "b", nil)
	a.send(wire.Request{Type: wire.TypeQueue, Mode: wire.ModeVideo})
	a.expect("queued")
	b.send(wire.Request{Type: wire.TypeQueue, Mode: wire.ModeVideo})
	b.expect("queued")
	ma, mb = a.expect("matched"), b.expect("matched")
	if ma.str("role") != "offerer" {
		a, b, ma, mb = b, a, mb, ma
	}
	return a, b, ma, mb
}

type iceServer struct {
	urls             []string
	user, credential string
}

func iceServers(t *testing.T, m msg) []iceServer {
	t.Helper()
	list, ok := m["ice_servers"].([]any)
	if !ok {
		t.Fatalf("matched without ice_servers: %v", m)
	}
	var out []iceServer
	for _, e := range list {
		o := e.(map[string]any)
		s := iceServer{}
		for _, u := range o["urls"].([]any) {
			s.urls = append(s.urls, u.(string))
		}
		s.user, _ = o["username"].(string)
		s.credential, _ = o["credential"].(string)
		out = append(out, s)
	}
	return out
}

func TestMatchedCarriesTheNodesRelay(t *testing.T) {
	cfg := testConfig(t)
	n := startNode(t, cfg)
	a, _, ma, mb := matchedPair(t, n)
	if f, _ := a.welcome["features"].(map[string]any); f["turn"] != true {
		t.Errorf("welcome.features = %v, want turn true", a.welcome["features"])
	}
	if ma.str("ice_transport_policy") != "all" {
		t.Errorf("ice_transport_policy = %q in turn.mode auto", ma.str("ice_transport_policy"))
	}
	sa, sb := iceServers(t, ma), iceServers(t, mb)
	if len(sa) != 2 || len(sb) != 2 {
		t.Fatalf("ice_servers = %+v / %+v, want a STUN and a TURN entry each", sa, sb)
	}
	stunURL := sa[0].urls[0]
	if !strings.HasPrefix(stunURL, "stun:127.0.0.1:") || sa[0].user != "" {
		t.Fatalf("STUN entry %+v", sa[0])
	}
	port := strings.TrimPrefix(stunURL, "stun:127.0.0.1:")
	want := []string{"turn:127.0.0.1:" + port + "?transport=udp"}
	if len(sa[1].urls) != 2 || sa[1].urls[0] != want[0] || !strings.HasPrefix(sa[1].urls[1], "turn:127.0.0.1:") || !strings.HasSuffix(sa[1].urls[1], "?transport=tcp") {
		t.Fatalf("TURN urls %v", sa[1].urls)
	}
	for i, s := range []iceServer{sa[1], sb[1]} {
		u, err := turn.ParseUsername(s.user)
		if err != nil {
			t.Fatalf("stranger %d username %q: %v", i, s.user, err)
		}
		if u.Room != ma.str("room") || u.Session == "" {
			t.Errorf("username %q does not name room %s and a session", s.user, ma.str("room"))
		}
		if ttl := time.Until(u.Expiry); ttl < 59*time.Minute || ttl > 61*time.Minute {
			t.Errorf("credential lives %v, want turn.credential_ttl (1h)", ttl)
		}
		if s.credential != turn.Password(cfg.TURN.Secret, s.user) {
			t.Errorf("credential is not HMAC-SHA1 of the username under turn.secret")
		}
	}
	if sa[1].user == sb[1].user {
		t.Error("both strangers got the same TURN username")
	}
}

func TestRelayOnlyMode(t *testing.T) {
	cfg := testConfig(t)
	cfg.TURN.Mode = "always"
	n := startNode(t, cfg)
	_, _, ma, mb := matchedPair(t, n)
	for _, m := range []msg{ma, mb} {
		if m.str("ice_transport_policy") != "relay" {
			t.Errorf("ice_transport_policy = %q, want relay", m.str("ice_transport_policy"))
		}
	}
}

// Two strangers relay through the node with the credentials `matched`
// gave them; the admin API shows their room on the turn path.
func TestAdminShowsRelayedRoom(t *testing.T) {
	cfg := testConfig(t)
	cfg.Admin.Token = "op"
	cfg.TURN.AllowedPeerCIDRs = []string{"127.0.0.1/32"} // both relays are on loopback here
	n := startNode(t, cfg)
	_, _, ma, mb := matchedPair(t, n)
	room := ma.str("room")
	ra, rb := relayFor(t, iceServers(t, ma)[1]), relayFor(t, iceServers(t, mb)[1])
	for _, p := range [][2]*relayClient{{ra, rb}, {rb, ra}} {
		if err := p[0].c.CreatePermission(p[1].conn.LocalAddr()); err != nil {
			t.Fatal(err)
		}
	}
	stop := make(chan struct{})
	defer close(stop)
	for _, p := range [][2]*relayClient{{ra, rb}, {rb, ra}} {
		go func(from, to *relayClient) {
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			buf := make([]byte, 300)
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					_, _ = from.conn.WriteTo(buf, to.conn.LocalAddr())
				}
			}
		}(p[0], p[1])
		go func(c *relayClient) {
			buf := make([]byte, 1500)
			for {
				if _, _, err := c.conn.ReadFrom(buf); err != nil {
					return
				}
			}
		}(p[1])
	}
	var first map[string]any
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		code, r := adminGet(t, n.url+"/api/rooms/"+room, "op")
		if code != 200 || r["path"] != "turn" {
			continue
		}
		ab, ba := r["a_to_b"].(map[string]any), r["b_to_a"].(map[string]any)
		if ab["bytes"].(float64) == 0 || ba["bytes"].(float64) == 0 {
			continue
		}
		if first == nil {
			first = r
			continue
		}
		fab, fba := first["a_to_b"].(map[string]any), first["b_to_a"].(map[string]any)
		if ab["bytes"].(float64) > fab["bytes"].(float64) && ba["bytes"].(float64) > fba["bytes"].(float64) &&
			ab["bitrate_bps"].(float64) > 0 && ba["bitrate_bps"].(float64) > 0 {
			return
		}
	}
	t.Fatalf("room %s never showed path turn with bytes and bitrate growing both ways (first: %v)", room, first)
}

type relayClient struct {
	c    *pturn.Client
	conn net.PacketConn
}

// relayFor allocates on the node's relay with a TURN entry from matched.
func relayFor(t *testing.T, s iceServer) *relayClient {
	t.Helper()
	rc, err := allocateAt(t, udpURLAddr(s), s)
	if err != nil {
		t.Fatalf("allocating with the matched credential: %v", err)
	}
	return rc
}

// udpURLAddr is the host:port of the entry's UDP TURN URL.
func udpURLAddr(s iceServer) string {
	return strings.TrimSuffix(strings.TrimPrefix(s.urls[0], "turn:"), "?transport=udp")
}

// allocateAt asks the relay at addr for an allocation with s's credential,
// as a pion TURN client over UDP.
func allocateAt(t *testing.T, addr string, s iceServer) (*relayClient, error) {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := pturn.NewClient(&pturn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: s.user, Password: s.credential, Realm: "duet",
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	relay, err := c.Allocate()
	if err != nil {
		c.Close()
		_ = conn.Close()
		return nil, err
	}
	t.Cleanup(func() { _ = relay.Close(); c.Close(); _ = conn.Close() })
	return &relayClient{c: c, conn: relay}, nil
}
