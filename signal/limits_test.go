package signal

import (
	"testing"
	"time"

	"github.com/duetchat/duet/configs"
)

// testSignal is the signalling settings of the hub tests that open
// sockets: frames up to 64 KiB, no pings in a test's life, a short grace.
func testSignal() configs.Signal {
	return configs.Signal{MaxMessageBytes: 1 << 16, PingInterval: time.Minute, ResumeGrace: time.Second}
}

func testLimits() configs.Limits {
	return configs.Limits{
		ConnectionsPerIP: 2, ConnectRatePerIP: 1, ConnectBurstPerIP: 3,
		MessageRate: 100, MessageBurst: 100,
		SignalRate: 10, SignalBurst: 50,
		ChatRate: 1, ChatBurst: 3,
		QueueRate: 1, QueueBurst: 2,
		SessionsPerIP: 3, JoinsPerMinute: 60, IPJoinsPerMinute: 120,
		IPMessageRate: 5, IPMessageBurst: 5,
	}
}

func TestSessionLimitsByClass(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name    string
		msgType string
		burst   int // how many pass at t0
		refill  time.Duration
	}{
		{"trickle ICE burst fits", "candidate", 50, 100 * time.Millisecond},
		{"offer shares the signal budget", "offer", 50, 100 * time.Millisecond},
		{"chat", "chat", 3, time.Second},
		{"skip bots", "next", 2, time.Second},
		{"queue shares next's budget", "queue", 2, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newSessionLimits(testLimits())
			c := classOf(tt.msgType)
			for i := 0; i < tt.burst; i++ {
				if !l.allow(t0, c) {
					t.Fatalf("message %d of the burst refused", i+1)
				}
			}
			if l.allow(t0, c) {
				t.Fatal("message past the burst allowed")
			}
			if !l.allow(t0.Add(tt.refill), c) {
				t.Fatal("not refilled after one interval")
			}
		})
	}
}

func TestChatFloodDoesNotStarveSignalling(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := newSessionLimits(testLimits())
	for i := 0; i < 100; i++ {
		l.allow(t0, classChat)
	}
	if !l.allow(t0, classSignal) {
		t.Fatal("chat flood used up the signalling budget")
	}
}

// TestPerMinuteBudgets: a session's queue joins are bounded; the minute
// refills them.
func TestPerMinuteBudgets(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := newSessionLimits(testLimits()) // 60 joins a minute
	for i := range 60 {
		if !l.joins.AllowN(t0, 1) {
			t.Fatalf("join %d of 60 refused", i+1)
		}
	}
	if l.joins.AllowN(t0, 1) {
		t.Fatal("61st join in one minute allowed")
	}
	if !l.joins.AllowN(t0.Add(time.Second), 1) {
		t.Fatal("a second later one join is back")
	}
}
