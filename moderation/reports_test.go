package moderation

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/duetchat/duet/internal/testtool"
)

func TestMemoryReportsBounded(t *testing.T) {
	ctx := context.Background()
	r := NewMemoryStore(3)
	at := time.Unix(1000, 0)
	for i := 0; i < 5; i++ {
		if err := r.Record(ctx, Report{Room: fmt.Sprint("room", i), Reporter: "x", Reported: "bad", At: at}); err != nil {
			t.Fatal(err)
		}
	}
	_ = r.Record(ctx, Report{Room: "other", Reporter: "y", Reported: "someone"})
	got, _ := r.Against(ctx, "bad")
	if len(got) != 2 || got[0].Room != "room4" || got[1].Room != "room3" {
		t.Fatalf("Against(bad) = %+v, want the two newest that fit the bound, newest first", got)
	}
}

func redisClient(t *testing.T, addr string) redis.UniversalClient {
	c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestRedisReportsShared: what one node records, another reads, newest
// first and bounded, on a real redis-server.
func TestRedisReportsShared(t *testing.T) {
	ctx := context.Background()
	addr := testtool.StartRedis(t)
	a, b := NewRedisStore(redisClient(t, addr), "duet:", 3), NewRedisStore(redisClient(t, addr), "duet:", 3)
	at := time.Unix(1000, 0).UTC()
	for i := range 5 {
		if err := a.Record(ctx, Report{Room: fmt.Sprint("room", i), Reporter: "x", Reported: "bad", Reason: "spam", At: at}); err != nil {
			t.Fatal(err)
		}
	}
	got, err := b.Against(ctx, "bad")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].Room != "room4" || got[2].Room != "room2" || got[0].Reason != "spam" || !got[0].At.Equal(at) {
		t.Fatalf("Against(bad) = %+v, want room4, room3, room2", got)
	}
	if got, _ := b.Against(ctx, "nobody"); len(got) != 0 {
		t.Fatalf("reports for an unreported session: %v", got)
	}
}

// TestModeration runs the ban rules against both stores; with Redis, two
// moderators on one server stand for two nodes.
func TestModeration(t *testing.T) {
	stores := map[string]func(t *testing.T) (Store, Store){
		"memory": func(t *testing.T) (Store, Store) { s := NewMemoryStore(100); return s, s },
		"redis": func(t *testing.T) (Store, Store) {
			addr := testtool.StartRedis(t)
			return NewRedisStore(redisClient(t, addr), "duet:", 100), NewRedisStore(redisClient(t, addr), "duet:", 100)
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) { moderationRules(t, open) })
	}
}

func moderationRules(t *testing.T, open func(t *testing.T) (Store, Store)) {
	ctx := context.Background()
	policy := Policy{ReportsToBan: 3, Window: time.Hour, BanDuration: 24 * time.Hour}
	report := func(m *Moderator, at time.Time, reporter, reported string) *Ban {
		t.Helper()
		b, err := m.Report(ctx, Report{Room: "r", Reporter: reporter, Reported: reported, At: at}, "ip-"+reported)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	t.Run("distinct reporters within the window ban session and address", func(t *testing.T) {
		s1, s2 := open(t)
		now := time.Now().UTC()
		clock := func() time.Time { return now }
		a, b := NewModerator(s1, policy, clock, nil), NewModerator(s2, policy, clock, nil)
		// Old reports and repeats by one reporter do not add up.
		if report(a, now.Add(-2*time.Hour), "old", "bad") != nil ||
			report(a, now, "x", "bad") != nil || report(b, now, "x", "bad") != nil || report(b, now, "y", "bad") != nil {
			t.Fatal("banned before three distinct reporters within the window")
		}
		if _, banned, _ := b.Check(ctx, "bad", "ip-bad"); banned {
			t.Fatal("checked as banned before the third reporter")
		}
		ban := report(b, now, "z", "bad")
		if ban == nil || ban.Session != "bad" || ban.IPHash != "ip-bad" || ban.By != ByReports || !ban.Until.Equal(ban.Created.Add(24*time.Hour)) {
			t.Fatalf("third distinct reporter: ban %+v", ban)
		}
		if report(a, now, "w", "bad") != nil {
			t.Fatal("a fourth report made a second ban")
		}
		for _, c := range []struct{ session, ip string }{{"bad", ""}, {"new-session", "ip-bad"}} {
			got, banned, err := a.Check(ctx, c.session, c.ip)
			if err != nil || !banned || got.ID != ban.ID || !got.Until.Equal(ban.Until) {
				t.Fatalf("Check(%q, %q) on the other node = %+v %v %v", c.session, c.ip, got, banned, err)
			}
		}
		if _, banned, _ := a.Check(ctx, "someone", "ip-someone"); banned {
			t.Fatal("an unrelated session is banned")
		}
		list, err := a.List(ctx)
		if err != nil || len(list) != 1 || list[0].ID != ban.ID {
			t.Fatalf("List = %+v, %v", list, err)
		}
		if ok, err := a.Lift(ctx, ban.ID); !ok || err != nil {
			t.Fatalf("Lift = %v, %v", ok, err)
		}
		if ok, _ := b.Lift(ctx, ban.ID); ok {
			t.Fatal("lifted the same ban twice")
		}
		if _, banned, _ := b.Check(ctx, "bad", "ip-bad"); banned {
			t.Fatal("still banned after Lift")
		}
	})
	t.Run("admin bans, bad bans and expiry", func(t *testing.T) {
		s1, _ := open(t)
		now := time.Now().UTC()
		m := NewModerator(s1, policy, func() time.Time { return now }, nil)
		if _, err := m.Add(ctx, Ban{}, time.Hour); err != ErrBadBan {
			t.Fatalf("a ban naming nobody: %v", err)
		}
		if _, err := m.Add(ctx, Ban{Session: "s"}, 0); err != ErrBadBan {
			t.Fatalf("a ban lasting nothing: %v", err)
		}
		short, err := m.Add(ctx, Ban{IPHash: "h", Reason: "spam"}, 200*time.Millisecond)
		if err != nil || short.By != ByAdmin {
			t.Fatalf("Add = %+v, %v", short, err)
		}
		long, _ := m.Add(ctx, Ban{IPHash: "h2"}, time.Hour)
		if got, banned, _ := m.Check(ctx, "any", "h"); !banned || got.ID != short.ID {
			t.Fatal("the address ban does not hold")
		}
		now = now.Add(time.Second) // the memory store's clock
		deadline := time.Now().Add(5 * time.Second)
		for { // Redis expires keys on its own clock
			if _, banned, _ := m.Check(ctx, "any", "h"); !banned {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the ban outlived its duration")
			}
			time.Sleep(50 * time.Millisecond)
		}
		if list, _ := m.List(ctx); len(list) != 1 || list[0].ID != long.ID {
			t.Fatalf("List after expiry = %+v", list)
		}
	})
}
