package moderation

import (
	"context"
	"fmt"
	"testing"
	"time"
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
