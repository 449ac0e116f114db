package moderation

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/duetchat/duet/internal/testtool"
)

func TestMemoryReportsBoundedAndQueryable(t *testing.T) {
	r := NewMemoryReports(3)
	at := time.Unix(1000, 0)
	for i := 0; i < 5; i++ {
		if err := r.Record(context.Background(), Report{Room: fmt.Sprint("room", i), Reporter: "x", Reported: "bad", At: at}); err != nil {
			t.Fatal(err)
		}
	}
	_ = r.Record(context.Background(), Report{Room: "other", Reporter: "y", Reported: "someone"})
	got := r.Against("bad")
	if len(got) != 2 || got[0].Room != "room3" || got[1].Room != "room4" {
		t.Fatalf("Against(bad) = %+v, want the two newest that fit the bound", got)
	}
	if len(r.Against("nobody")) != 0 {
		t.Fatal("reports for an unreported session")
	}
}

// TestRedisReportsShared: what one node records, another reads, newest
// first and bounded, on a real redis-server.
func TestRedisReportsShared(t *testing.T) {
	ctx := context.Background()
	addr := testtool.StartRedis(t)
	client := func() redis.UniversalClient {
		c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: []string{addr}})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	a, b := NewRedisReports(client(), "duet:", 3), NewRedisReports(client(), "duet:", 3)
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
