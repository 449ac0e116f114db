package turn

import (
	"encoding/binary"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v3"
)

// rawAllocate asks for an allocation over a plain UDP socket with the
// given lifetime and then never speaks again: no refresh, no delete, the
// way a client that crashed or walked away behaves.
func rawAllocate(t *testing.T, r *relay, user, pass string, lifetime time.Duration) (*net.UDPConn, error) {
	t.Helper()
	udp, _, _ := r.Ports()
	conn, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: udp})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	life := make([]byte, 4)
	binary.BigEndian.PutUint32(life, uint32(lifetime/time.Second))
	base := []stun.Setter{
		stun.TransactionID, stun.NewType(stun.MethodAllocate, stun.ClassRequest),
		stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}},
		stun.RawAttribute{Type: stun.AttrLifetime, Value: life},
	}
	roundTrip := func(setters ...stun.Setter) *stun.Message {
		t.Helper()
		req := stun.MustBuild(setters...)
		if _, err := conn.Write(req.Raw); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 1500)
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no answer to the allocate request: %v", err)
		}
		res := &stun.Message{Raw: append([]byte{}, buf[:n]...)}
		if err := res.Decode(); err != nil {
			t.Fatal(err)
		}
		return res
	}
	challenge := roundTrip(append(base, stun.Fingerprint)...)
	var realm stun.Realm
	var nonce stun.Nonce
	if err := realm.GetFrom(challenge); err != nil {
		t.Fatalf("no realm in the 401: %v", err)
	}
	if err := nonce.GetFrom(challenge); err != nil {
		t.Fatalf("no nonce in the 401: %v", err)
	}
	res := roundTrip(append(base, stun.NewUsername(user), realm, nonce,
		stun.NewLongTermIntegrity(user, realm.String(), pass), stun.Fingerprint)...)
	if res.Type.Class != stun.ClassSuccessResponse {
		var code stun.ErrorCodeAttribute
		_ = code.GetFrom(res)
		return conn, fmt.Errorf("allocate refused: %v", code)
	}
	return conn, nil
}

// TestAllocationOfSilentClientLapses: a client that allocates and then
// never refreshes holds its allocation only for its lifetime; then the
// relay frees it, its session's quota comes back, and nothing is left.
func TestAllocationOfSilentClientLapses(t *testing.T) {
	r := startRelay(t, func(o *Options) { o.TURN.MaxAllocationsPerUser = 1 })
	cred, err := r.creds.Mint("room", "silent")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := rawAllocate(t, r, cred.Username, cred.Password, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := r.gauge(t, "duet_turn_allocations", "udp"); got != 1 {
		t.Fatalf("%v live allocations after allocating, want 1", got)
	}
	// The quota is held while the allocation lives...
	if _, err := rawAllocate(t, r, cred.Username, cred.Password, 2*time.Second); err == nil {
		t.Fatal("a second allocation for the session within its quota of 1")
	}
	// ...and free once it lapses.
	deadline := time.Now().Add(15 * time.Second)
	for r.gauge(t, "duet_turn_allocations", "udp") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the silent client's allocation outlived its lifetime")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := rawAllocate(t, r, cred.Username, cred.Password, 2*time.Second); err != nil {
		t.Fatalf("the session's quota did not come back: %v", err)
	}
}
