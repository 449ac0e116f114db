package transport

import (
	"testing"
	"time"

	"github.com/duetchat/duet/configs"
)

// testLimits: 2 sockets and a connect burst of 3 per address, 5 messages,
// 3 sessions and 120 joins a minute.
func testLimits() configs.Limits {
	return configs.Limits{
		ConnectionsPerIP: 2, ConnectRatePerIP: 1, ConnectBurstPerIP: 3,
		IPMessageRate: 5, IPMessageBurst: 5,
		SessionsPerIP: 3, IPJoinsPerMinute: 120,
	}
}

func TestIPTable(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ips := NewIPTable(testLimits())
	if ok, _ := ips.Acquire("192.0.2.1", t0); !ok {
		t.Fatal("first connection refused")
	}
	if ok, _ := ips.Acquire("192.0.2.1", t0); !ok {
		t.Fatal("second connection refused")
	}
	if ok, why := ips.Acquire("192.0.2.1", t0); ok || why == "" {
		t.Fatal("third concurrent connection allowed (limit 2)")
	}
	if ok, _ := ips.Acquire("192.0.2.2", t0); !ok {
		t.Fatal("another address was limited by the first")
	}
	ips.Release("192.0.2.1", t0)
	// A refusal for too many sockets spends no connect token: one is left.
	if ok, _ := ips.Acquire("192.0.2.1", t0); !ok {
		t.Fatal("connection after release refused")
	}
	ips.Release("192.0.2.1", t0)
	if ok, why := ips.Acquire("192.0.2.1", t0); ok || why != "connecting too fast" {
		t.Fatalf("fourth connect in the same instant allowed (burst 3): %v %q", ok, why)
	}

	for i := 0; i < 5; i++ {
		if !ips.AllowMessage("192.0.2.9", t0) {
			t.Fatalf("message %d refused", i)
		}
	}
	if ips.AllowMessage("192.0.2.9", t0) {
		t.Fatal("per-IP message budget not enforced")
	}

	ips.Release("192.0.2.1", t0)
	ips.Release("192.0.2.2", t0)
	if n := ips.Sweep(t0.Add(time.Hour), time.Minute); n != 3 {
		t.Fatalf("sweep removed %d idle addresses, want 3", n)
	}
}

// TestIPJoinAndSessionBudgets: an address's joins and sessions are
// bounded; an ended session gives its place back.
func TestIPJoinAndSessionBudgets(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ips := NewIPTable(testLimits()) // 120 joins a minute, 3 sessions
	for range 120 {
		ips.AllowJoin("192.0.2.1", t0)
	}
	if ips.AllowJoin("192.0.2.1", t0) || !ips.AllowJoin("192.0.2.2", t0) {
		t.Fatal("the per-address join budget is wrong")
	}
	for i := range 3 {
		if !ips.AddSession("192.0.2.1", t0) {
			t.Fatalf("session %d refused", i+1)
		}
	}
	if ips.AddSession("192.0.2.1", t0) {
		t.Fatal("a fourth session from one address")
	}
	ips.DropSession("192.0.2.1", t0)
	if !ips.AddSession("192.0.2.1", t0) {
		t.Fatal("a session ended and its place stayed taken")
	}
	if n := ips.Sweep(t0.Add(time.Hour), time.Minute); n != 1 {
		t.Fatalf("sweep removed %d addresses, want only the one without sessions", n)
	}
}
