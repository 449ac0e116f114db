package matcher

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// chanNotifier signals each match.
type chanNotifier chan Match

func (c chanNotifier) Matched(m Match) { c <- m }

// pollWithBackoff is the seed's matcher, kept as the baseline duet's is
// measured against: a loop that polls the queue, 50 ms after a match,
// doubling up to 1 s while nothing matches. duet's matcher runs a pass
// when a join wakes it instead.
func pollWithBackoff(ctx context.Context, m *Matcher) {
	wait := 50 * time.Millisecond
	for {
		if n, _ := m.Pass(ctx); n > 0 {
			wait = 50 * time.Millisecond
		} else {
			wait = min(2*wait, time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// BenchmarkMatchLatency: strangers arrive in pairs at random gaps (0-200
// ms, as on a quiet evening); the time from the second join to the match
// is reported as p50-ms and p99-ms, for duet's woken matcher and for the
// seed's polling design, on the memory store.
func BenchmarkMatchLatency(b *testing.B) {
	designs := []struct {
		name string
		run  func(ctx context.Context, m *Matcher)
	}{
		{"woken", func(ctx context.Context, m *Matcher) { _ = m.Run(ctx) }},
		{"polling-seed", pollWithBackoff},
	}
	const pairs = 30
	for _, d := range designs {
		b.Run(d.name, func(b *testing.B) {
			var lat []time.Duration
			gaps := seeded(7)
			for i := 0; i < b.N; i++ {
				ctx, cancel := context.WithCancel(context.Background())
				got := make(chanNotifier, 1)
				m := New(NewMemoryStore(), got, Options{})
				go d.run(ctx, m)
				for p := range pairs {
					// The next pair's arrival. The gaps stay inside the timed
					// loop so that one op is seconds long and -benchtime does
					// not multiply them; ns/op means nothing here, the
					// percentiles do.
					time.Sleep(time.Duration(gaps.IntN(200)) * time.Millisecond)
					_ = m.Join(ctx, Ticket{Session: fmt.Sprint("a", p), Mode: ModeVideo})
					start := time.Now()
					_ = m.Join(ctx, Ticket{Session: fmt.Sprint("b", p), Mode: ModeVideo})
					select {
					case <-got:
						lat = append(lat, time.Since(start))
					case <-time.After(5 * time.Second):
						b.Fatalf("pair %d never matched", p)
					}
				}
				cancel()
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
		})
	}
}
