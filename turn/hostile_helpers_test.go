//go:build unix

package turn

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/duetchat/duet/internal/testtool"
)

// Measuring the process around an attack, and the STUN the hostile
// catalogue speaks over streams.

// requireCalm: goroutines and heap back to the baseline, the process idle.
func (h *hostile) requireCalm(t *testing.T, base testtool.Baseline) {
	t.Helper()
	testtool.RequireCalm(t, base, testtool.Slack{Goroutines: 8, Heap: 8 << 20, Within: 15 * time.Second})
}

// allocateOver makes an authenticated Allocate over a stream connection.
func allocateOver(t *testing.T, c net.Conn, user, password string) {
	t.Helper()
	udpTransport := stun.RawAttribute{Type: stun.AttrRequestedTransport, Value: []byte{17, 0, 0, 0}}
	allocType := stun.NewType(stun.MethodAllocate, stun.ClassRequest)
	if _, err := c.Write(stun.MustBuild(stun.TransactionID, allocType, udpTransport).Raw); err != nil {
		t.Fatal(err)
	}
	challenge := readSTUN(t, c)
	var realm stun.Realm
	var nonce stun.Nonce
	if err := realm.GetFrom(challenge); err != nil {
		t.Fatalf("no realm in %v: %v", challenge, err)
	}
	if err := nonce.GetFrom(challenge); err != nil {
		t.Fatalf("no nonce in %v: %v", challenge, err)
	}
	req := stun.MustBuild(stun.TransactionID, allocType, udpTransport, stun.NewUsername(user), realm, nonce,
		stun.NewLongTermIntegrity(user, realm.String(), password), stun.Fingerprint)
	if _, err := c.Write(req.Raw); err != nil {
		t.Fatal(err)
	}
	if res := readSTUN(t, c); res.Type.Class != stun.ClassSuccessResponse {
		t.Fatalf("authenticated Allocate answered %v", res)
	}
}

func readSTUN(t *testing.T, c net.Conn) *stun.Message {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	m, err := readSTUNErr(c)
	if err != nil {
		t.Fatalf("reading a STUN message: %v", err)
	}
	return m
}

func readSTUNErr(c net.Conn) (*stun.Message, error) {
	hdr := make([]byte, 20)
	if _, err := io.ReadFull(c, hdr); err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[2:4]))
	if _, err := io.ReadFull(c, body); err != nil {
		return nil, fmt.Errorf("body: %w", err)
	}
	m := &stun.Message{Raw: append(hdr, body...)}
	if err := m.Decode(); err != nil {
		return nil, fmt.Errorf("decoding: %w", err)
	}
	return m, nil
}
