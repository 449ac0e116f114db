package turn

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	pturn "github.com/pion/turn/v4"
)

// pionClient is a real TURN client (pion's) holding one allocation.
type pionClient struct {
	c     *pturn.Client
	relay net.PacketConn
}

func allocate(t *testing.T, r *relay, user, pass string) (*pionClient, error) {
	t.Helper()
	udp, _, _ := r.Ports()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", udp)
	c, err := pturn.NewClient(&pturn.ClientConfig{
		STUNServerAddr: addr, TURNServerAddr: addr, Conn: conn,
		Username: user, Password: pass, Realm: "duet", LoggerFactory: pionLogs{},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Listen(); err != nil {
		t.Fatal(err)
	}
	pc := &pionClient{c: c}
	t.Cleanup(pc.close)
	relayConn, err := c.Allocate()
	if err != nil {
		return pc, err
	}
	pc.relay = relayConn
	return pc, nil
}

func (p *pionClient) close() {
	if p.relay != nil {
		_ = p.relay.Close()
		p.relay = nil
	}
	p.c.Close()
}

// waitLive waits until the relay counts want live allocations under a
// quota key.
func waitLive(t *testing.T, r *relay, key string, want int) {
	t.Helper()
	live := func() int {
		r.acc.mu.Lock()
		defer r.acc.mu.Unlock()
		return r.acc.live[key]
	}
	for deadline := time.Now().Add(5 * time.Second); live() != want; {
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d live allocations, want %d", key, live(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustAllocate(t *testing.T, r *relay, room, session string) *pionClient {
	t.Helper()
	cred, err := r.creds.Mint(room, session)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := allocate(t, r, cred.Username, cred.Password)
	if err != nil {
		t.Fatalf("allocation for %s/%s: %v", room, session, err)
	}
	return pc
}

// The nine peers the issue names, each refused by default and allowed
// only when listed, through pion's client (coturn's uclient will not ask
// an IPv4 relay for an IPv6 peer).
func TestPeerPolicyOverTURN(t *testing.T) {
	peers := []string{"127.0.0.1", "0.0.0.0", "10.0.0.1", "100.64.0.1", "169.254.1.1", "224.0.0.1", "::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1"}
	byDefault := startRelay(t, func(o *Options) { o.TURN.MaxAllocationsPerUser, o.TURN.MaxAllocationsPerIP = 100, 1000 })
	for _, p := range peers {
		ip := net.ParseIP(p)
		peer := &net.UDPAddr{IP: ip, Port: 9}
		t.Run(p+" refused by default", func(t *testing.T) {
			c := mustAllocate(t, byDefault, "room", "s-"+strings.ReplaceAll(p, ":", "_"))
			if err := c.c.CreatePermission(peer); err == nil {
				t.Fatalf("permission to %s granted", p)
			}
		})
		t.Run(p+" allowed when listed", func(t *testing.T) {
			listed := startRelay(t, func(o *Options) { o.TURN.AllowedPeerCIDRs = []string{p} })
			c := mustAllocate(t, listed, "room", "s")
			if err := c.c.CreatePermission(peer); err != nil {
				t.Fatalf("permission to listed %s refused: %v", p, err)
			}
		})
	}
}

func TestRoomAccountingAndQuota(t *testing.T) {
	r := startRelay(t, func(o *Options) {
		o.TURN.AllowedPeerCIDRs = []string{"127.0.0.1/32"}
		o.TURN.MaxAllocationsPerUser = 2
	})
	a := mustAllocate(t, r, "R1", "sa")
	b := mustAllocate(t, r, "R1", "sb")
	if _, ok := r.Room("R1", "sa", "sb"); !ok {
		t.Fatal("room R1 unknown after both allocated")
	}

	const n, size = 300, 200
	sent := map[string]int{}
	send := func(from, to *pionClient, tag byte) {
		payload := bytes.Repeat([]byte{tag}, size)
		for range n {
			if _, err := from.relay.WriteTo(payload, to.relay.LocalAddr()); err != nil {
				t.Fatalf("relay write: %v", err)
			}
			sent[string(tag)]++
		}
	}
	recv := func(c *pionClient, tag byte) int {
		got := 0
		buf := make([]byte, 1500)
		for got < n {
			_ = c.relay.SetReadDeadline(time.Now().Add(3 * time.Second))
			k, _, err := c.relay.ReadFrom(buf)
			if err != nil {
				break
			}
			if k == size && buf[0] == tag {
				got++
			}
		}
		return got
	}
	// Each relay drops what arrives from a peer it has no permission for.
	if err := a.c.CreatePermission(b.relay.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if err := b.c.CreatePermission(a.relay.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	done := make(chan int, 2)
	go func() { done <- recv(b, 'a') }()
	go func() { done <- recv(a, 'b') }()
	send(a, b, 'a')
	send(b, a, 'b')
	gotB, gotA := <-done, <-done
	if gotA == 0 || gotB == 0 {
		t.Fatalf("nothing relayed: a got %d, b got %d", gotA, gotB)
	}

	// Loopback may still drop a datagram under load, so compare with
	// what arrived rather than with what was sent.
	f, ok := r.Room("R1", "sa", "sb")
	if !ok {
		t.Fatal("room R1 unknown")
	}
	for _, c := range []struct {
		name     string
		flow     Flow
		received int
	}{{"a->b", f.AToB, min(gotA, gotB)}, {"b->a", f.BToA, min(gotA, gotB)}} {
		if c.flow.Packets < uint64(c.received) || c.flow.Packets > n {
			t.Errorf("%s packets = %d, want between %d and %d", c.name, c.flow.Packets, c.received, n)
		}
		if c.flow.Bytes != c.flow.Packets*size {
			t.Errorf("%s bytes = %d, want %d", c.name, c.flow.Bytes, c.flow.Packets*size)
		}
	}
	// Steady media, not one burst, is what makes a room "relaying".
	stop := make(chan struct{})
	streamed := make(chan struct{})
	go func() {
		defer close(streamed)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				_, _ = a.relay.WriteTo(make([]byte, size), b.relay.LocalAddr())
			}
		}
	}()
	relaying := false
	for deadline := time.Now().Add(10 * time.Second); !relaying && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		now, _ := r.Room("R1", "sa", "sb")
		relaying = now.Relaying && now.AToB.BitrateBPS > 0
	}
	close(stop)
	<-streamed
	if !relaying {
		t.Error("a room with 50 packets a second relayed never counted as relaying with a bitrate")
	}
	if _, ok := r.Room("R1", "sa", "nobody"); !ok {
		t.Error("half a room (one stranger relaying) unknown")
	}

	// Quota: two live allocations per session, whatever the expiry.
	a2 := mustAllocate(t, r, "R1", "sa")
	cred, _ := Credentials{Secrets: []string{testSecret}, TTL: 2 * time.Hour, Now: time.Now}.Mint("R1", "sa")
	if _, err := allocate(t, r, cred.Username, cred.Password); err == nil {
		t.Fatal("a third allocation for one session was granted")
	}
	mustAllocate(t, r, "R1", "sc") // another session is not affected
	a2.close()
	// pion's client does not wait for the server to take its Refresh of
	// lifetime 0, which may reach a relay reader after the next Allocate
	waitLive(t, r, "s:sa", 1)
	mustAllocate(t, r, "R1", "sa") // a freed slot is usable again

	// Ending every allocation ends the room and logs one line each.
	for _, c := range []*pionClient{a, b} {
		c.close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(r.logs.String(), `session=sb`) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	logs := r.logs.String()
	for _, want := range []string{`msg="TURN allocation ended" room=R1 session=sa`, `session=sb`, "to_peer_packets="} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "127.0.0.1") && !strings.Contains(logs, "relay_ip=127.0.0.1") {
		t.Errorf("a client address was logged:\n%s", logs)
	}
}
