package turn

import (
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// stunClient speaks raw TURN over one UDP socket: enough to allocate and
// refresh with a credential and see what the relay answers.
type stunClient struct {
	t           *testing.T
	conn        *net.UDPConn
	user, pass  string
	realm       stun.Realm
	nonce       stun.Nonce
	gotNonce    bool
	lastErrCode stun.ErrorCode
}

func newSTUNClient(t *testing.T, r *relay, user, pass string) *stunClient {
	t.Helper()
	return newSTUNClientFrom(t, r, nil, user, pass)
}

// newSTUNClientFrom is newSTUNClient from a chosen loopback source.
func newSTUNClientFrom(t *testing.T, r *relay, from net.IP, user, pass string) *stunClient {
	t.Helper()
	udp, _, _ := r.Ports()
	var laddr *net.UDPAddr
	if from != nil {
		laddr = &net.UDPAddr{IP: from}
	}
	conn, err := net.DialUDP("udp4", laddr, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: udp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &stunClient{t: t, conn: conn, user: user, pass: pass}
}

func (c *stunClient) roundTrip(setters ...stun.Setter) *stun.Message {
	c.t.Helper()
	req := stun.MustBuild(setters...)
	if _, err := c.conn.Write(req.Raw); err != nil {
		c.t.Fatal(err)
	}
	_ = c.conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 1500)
	n, err := c.conn.Read(buf)
	if err != nil {
		c.t.Fatalf("no answer: %v", err)
	}
	res := &stun.Message{Raw: append([]byte{}, buf[:n]...)}
	if err := res.Decode(); err != nil {
		c.t.Fatal(err)
	}
	return res
}

// request sends an authenticated request of method, fetching a nonce
// first when it has none (or the old one went stale), and reports whether
// it succeeded.
func (c *stunClient) request(method stun.Method, attrs ...stun.Setter) bool {
	c.t.Helper()
	for try := 0; try < 2; try++ {
		if !c.gotNonce {
			res := c.roundTrip(append([]stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}, append(attrs, stun.Fingerprint)...)...)
			if err := c.realm.GetFrom(res); err != nil {
				c.t.Fatalf("no realm in the challenge: %v", err)
			}
			if err := c.nonce.GetFrom(res); err != nil {
				c.t.Fatalf("no nonce in the challenge: %v", err)
			}
			c.gotNonce = true
		}
		set := append([]stun.Setter{stun.TransactionID, stun.NewType(method, stun.ClassRequest)}, attrs...)
		set = append(set, stun.NewUsername(c.user), c.realm, c.nonce,
			stun.NewLongTermIntegrity(c.user, c.realm.String(), c.pass), stun.Fingerprint)
		res := c.roundTrip(set...)
		if res.Type.Class == stun.ClassSuccessResponse {
			return true
		}
		var code stun.ErrorCodeAttribute
		_ = code.GetFrom(res)
		c.lastErrCode = code.Code
		if code.Code != stun.CodeStaleNonce {
			return false
		}
		c.gotNonce = false
	}
	return false
}

func (c *stunClient) allocate() bool { return c.allocateFor(10 * time.Minute) }

func (c *stunClient) allocateFor(lifetime time.Duration) bool {
	life := make([]byte, 4)
	binary.BigEndian.PutUint32(life, uint32(lifetime/time.Second)) //nolint:gosec // test lifetimes are short
	return c.request(stun.MethodAllocate,
		stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}},
		stun.RawAttribute{Type: stun.AttrLifetime, Value: life})
}

func (c *stunClient) refresh() bool {
	life := make([]byte, 4)
	binary.BigEndian.PutUint32(life, 600)
	return c.request(stun.MethodRefresh, stun.RawAttribute{Type: stun.AttrLifetime, Value: life})
}

// bannedSessions is a Gate with a set of banned sessions.
type bannedSessions struct {
	mu  sync.Mutex
	ids map[string]bool
}

func (b *bannedSessions) ban(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ids[id] = true
}

func (b *bannedSessions) Refused(session string, _ net.Addr) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ids[session]
}

// A credential minted for a room works while the room lives; once the
// room has ended (Revoke) or its session is banned (the Gate), the relay
// refuses it for refreshes and new allocations alike, long before its TTL.
func TestCredentialStopsWithItsRoomOrBan(t *testing.T) {
	gate := &bannedSessions{ids: map[string]bool{}}
	r := startRelay(t, func(o *Options) { o.Gate = gate })
	for _, tt := range []struct {
		name, room, session string
		end                 func()
		reason              string
	}{
		{"room ended", "roomA", "alice", func() { r.Revoke("roomA") }, "revoked"},
		{"session banned", "roomB", "bob", func() { gate.ban("bob") }, "banned"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cred, err := r.creds.Mint(tt.room, tt.session)
			if err != nil {
				t.Fatal(err)
			}
			live := newSTUNClient(t, r, cred.Username, cred.Password)
			if !live.allocate() {
				t.Fatalf("allocate with a fresh credential refused (%d)", live.lastErrCode)
			}
			if !live.refresh() {
				t.Fatalf("refresh while the room lives refused (%d)", live.lastErrCode)
			}
			before := r.gauge(t, "duet_turn_auth_failures_total", tt.reason)
			tt.end()
			if live.refresh() {
				t.Error("refresh accepted after the credential was revoked")
			}
			fresh := newSTUNClient(t, r, cred.Username, cred.Password)
			if fresh.allocate() {
				t.Error("a new allocation accepted after the credential was revoked")
			}
			if got := r.gauge(t, "duet_turn_auth_failures_total", tt.reason); got < before+2 {
				t.Errorf("auth failures{%s} went %v -> %v, want two more", tt.reason, before, got)
			}
			// Another room's credential is untouched.
			other, _ := r.creds.Mint("roomC", "carol")
			if c := newSTUNClient(t, r, other.Username, other.Password); !c.allocate() {
				t.Errorf("an unrelated room's credential refused (%d)", c.lastErrCode)
			}
		})
	}
}

// Revocations last as long as a credential minted before them could, and
// no longer.
func TestRevocationsLapseWithTheTTL(t *testing.T) {
	now := time.Unix(1800000000, 0)
	rv := newRevocations(func() time.Time { return now }, time.Hour)
	rv.revoke("r1")
	for _, tt := range []struct {
		advance time.Duration
		room    string
		want    bool
		left    int
	}{
		{0, "r1", true, 1},
		{0, "r2", false, 1},
		{0, "", false, 1},
		{59 * time.Minute, "r1", true, 1},
		{time.Minute, "r1", false, 0},
	} {
		now = now.Add(tt.advance)
		if got := rv.revoked(tt.room); got != tt.want {
			t.Errorf("at +%v revoked(%q) = %v, want %v", tt.advance, tt.room, got, tt.want)
		}
		rv.prune()
		if got := rv.len(); got != tt.left {
			t.Errorf("after prune %d entries, want %d", got, tt.left)
		}
	}
}

// Sessions are cheap: one address holding many sessions' credentials
// still gets no more than turn.max_allocations_per_ip allocations (486),
// while another address is not held back by it.
func TestOneAddressCannotHoldTheRelay(t *testing.T) {
	r := startRelay(t, func(o *Options) { o.TURN.MaxAllocationsPerIP = 3 })
	attacker, honest := net.IPv4(127, 0, 0, 7), net.IPv4(127, 0, 0, 8)
	for i := range 5 {
		cred, err := r.creds.Mint("room"+string(rune('a'+i)), "sess"+string(rune('a'+i)))
		if err != nil {
			t.Fatal(err)
		}
		c := newSTUNClientFrom(t, r, attacker, cred.Username, cred.Password)
		ok := c.allocate()
		switch {
		case i < 3 && !ok:
			t.Fatalf("session %d of the address refused (%d) under its quota", i, c.lastErrCode)
		case i >= 3 && ok:
			t.Fatalf("session %d of the address got an allocation over its quota of 3", i)
		case i >= 3 && c.lastErrCode != stun.CodeAllocQuotaReached:
			t.Fatalf("over quota answered %d, want 486", c.lastErrCode)
		}
	}
	if got := r.gauge(t, "duet_turn_quota_refusals_total", "address"); got != 2 {
		t.Errorf("quota refusals{address} = %v, want 2", got)
	}
	cred, _ := r.creds.Mint("roomz", "sessz")
	if c := newSTUNClientFrom(t, r, honest, cred.Username, cred.Password); !c.allocate() {
		t.Fatalf("another address refused (%d)", c.lastErrCode)
	}
}

// Ending a room cuts its live allocations at once, whatever lifetime
// they were granted: nothing is relayed either way any more, while
// another room's relay carries on.
func TestRevokeCutsLiveAllocations(t *testing.T) {
	r := startRelay(t, func(o *Options) { o.TURN.AllowedPeerCIDRs = []string{"127.0.0.1/32"} })
	gone, kept := mustAllocate(t, r, "gone", "a"), mustAllocate(t, r, "kept", "b")
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = peer.Close() })
	peerAddr := peer.LocalAddr().(*net.UDPAddr)
	// reaches: a datagram from the peer to c's relay address arrives
	// within wait.
	reaches := func(c *pionClient, msg string, wait time.Duration) bool {
		t.Helper()
		if _, err := peer.WriteTo([]byte(msg), c.relay.LocalAddr()); err != nil {
			t.Fatal(err)
		}
		return readsWithin(c.relay, msg, wait)
	}
	for _, c := range []*pionClient{gone, kept} {
		for range 3 {
			if _, err := c.relay.WriteTo([]byte("hello"), peerAddr); err != nil {
				t.Fatal(err)
			}
		}
		waitChannel(t, r, c, peerAddr)
		if !reaches(c, "before", 5*time.Second) {
			t.Fatal("the peer does not reach a live allocation")
		}
	}
	// sent: a datagram from c's client through the relay arrives at the
	// peer within wait.
	sent := func(c *pionClient, msg string, wait time.Duration) bool {
		t.Helper()
		if _, err := c.relay.WriteTo([]byte(msg), peerAddr); err != nil {
			t.Fatal(err)
		}
		return readsWithin(peer, msg, wait)
	}
	r.Revoke("gone")
	deadline := time.Now().Add(5 * time.Second)
	for r.acc.cuts.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("allocations cut after the revocation: %d, want 1", r.acc.cuts.Load())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !reaches(kept, "after", 5*time.Second) || !sent(kept, "out", 5*time.Second) {
		t.Error("another room's allocation stopped relaying")
	}
	if reaches(gone, "after", 300*time.Millisecond) {
		t.Error("the ended room's allocation still relays the peer's datagrams")
	}
	if sent(gone, "gone-out", 300*time.Millisecond) {
		t.Error("the ended room's allocation still relays the client's datagrams")
	}
}

// readsWithin: msg arrives on pc within wait (other datagrams skipped).
func readsWithin(pc net.PacketConn, msg string, wait time.Duration) bool {
	buf := make([]byte, 1500)
	for {
		_ = pc.SetReadDeadline(time.Now().Add(wait))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			return false
		}
		if string(buf[:n]) == msg {
			return true
		}
	}
}
