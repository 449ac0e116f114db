package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/duetchat/duet/internal/testtool"
	"github.com/duetchat/duet/signal"
)

// TestLingering: only the newest operation on a token is written, by the
// earliest deadline of those it replaced; forgets and urgent records are
// due at once.
func TestLingering(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	save := func(tok, state string) item {
		return item{rec: &signal.Record{Token: tok, State: state}}
	}
	urgent := func(tok, state string) item {
		return item{rec: &signal.Record{Token: tok, State: state, Urgent: true}}
	}
	forget := func(tok string) item { return item{forget: tok} }
	type op struct {
		at int // ms after t0
		it item
	}
	for _, tc := range []struct {
		name string
		ops  []op
		at   int      // take what is due at this ms
		want []string // token=state (or token=DEL), sorted
		next int      // the earliest deadline left, ms; -1: nothing left
	}{
		{"one record waits its linger", []op{{0, save("a", "waiting")}}, 9, nil, 10},
		{"and is written then", []op{{0, save("a", "waiting")}}, 10, []string{"a=waiting"}, -1},
		{"a newer record replaces it, keeping its deadline",
			[]op{{0, save("a", "waiting")}, {4, save("a", "room")}, {9, save("a", "idle")}}, 10, []string{"a=idle"}, -1},
		{"records of other tokens keep theirs",
			[]op{{0, save("a", "waiting")}, {5, save("b", "waiting")}}, 10, []string{"a=waiting"}, 15},
		{"a forget is due at once", []op{{0, forget("a")}}, 0, []string{"a=DEL"}, -1},
		{"a forget after a save makes the save moot, due at once",
			[]op{{0, save("a", "idle")}, {3, forget("a")}}, 3, []string{"a=DEL"}, -1},
		{"a save after a forget wins, due when the forget was",
			[]op{{0, forget("a")}, {1, save("a", "idle")}}, 1, []string{"a=idle"}, -1},
		{"an urgent record is due at once and takes the waiting one's place",
			[]op{{0, save("a", "room")}, {2, urgent("a", "room")}}, 2, []string{"a=room"}, -1},
		{"a later ordinary record keeps an urgent deadline",
			[]op{{0, urgent("a", "room")}, {0, save("a", "idle")}}, 0, []string{"a=idle"}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := newLingering(10 * time.Millisecond)
			for _, o := range tc.ops {
				l.add(o.it, ms(o.at))
			}
			var got []string
			for _, it := range l.take(ms(tc.at), false) {
				if it.forget != "" {
					got = append(got, it.forget+"=DEL")
				} else {
					got = append(got, it.rec.Token+"="+it.rec.State)
				}
			}
			sort.Strings(got)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("due at %dms: %v, want %v", tc.at, got, tc.want)
			}
			next, ok := l.next()
			if tc.next < 0 && ok || tc.next >= 0 && (!ok || !next.Equal(ms(tc.next))) {
				t.Fatalf("next = %v, %v; want %dms", next.Sub(t0), ok, tc.next)
			}
		})
	}
}

// TestPlan: a flush's envelopes go as one publish per destination, each
// in order, records left out; single nodes get one publish per envelope;
// a long run is cut at perPublish.
func TestPlan(t *testing.T) {
	env := func(node string) held { return held{it: item{node: node}} }
	rec := held{it: item{rec: &signal.Record{Token: "t"}}}
	del := held{it: item{forget: "t"}}
	many := make([]held, perPublish+2)
	for i := range many {
		many[i] = env("a")
	}
	seq := func(from, to int) []int {
		var out []int
		for i := from; i < to; i++ {
			out = append(out, i)
		}
		return out
	}
	for _, tc := range []struct {
		name   string
		batch  []held
		single []string
		want   []publish
	}{
		{"nothing", nil, nil, nil},
		{"records only", []held{rec, del}, nil, nil},
		{"one envelope", []held{env("a")}, nil, []publish{{"a", []int{0}}}},
		{"interleaved nodes and records",
			[]held{env("a"), rec, env("b"), env("a"), del, env("b"), env("a")}, nil,
			[]publish{{"a", []int{0, 3, 6}}, {"b", []int{2, 5}}}},
		{"a single node gets one each",
			[]held{env("a"), env("b"), env("a"), env("b")}, []string{"b"},
			[]publish{{"a", []int{0, 2}}, {"b", []int{1}}, {"b", []int{3}}}},
		{"cut at perPublish", many, nil,
			[]publish{{"a", seq(0, perPublish)}, {"a", seq(perPublish, perPublish+2)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := plan(tc.batch, func(node string) bool {
				for _, s := range tc.single {
					if s == node {
						return true
					}
				}
				return false
			})
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("plan = %v, want %v", got, tc.want)
			}
		})
	}
}

// commandCalls reads how many times Redis ran cmd.
func commandCalls(t *testing.T, rdb redis.UniversalClient, cmd string) int {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_"+cmd+":calls="); ok {
			n, _ := strconv.Atoi(strings.SplitN(rest, ",", 2)[0])
			return n
		}
	}
	return 0
}

// TestBusCoalescesAndBatches: on a real Redis, records of one session
// queued together cost one SET, and envelopes for one node queued
// together one SPUBLISH on its batch channel, delivered in order.
func TestBusCoalescesAndBatches(t *testing.T) {
	addr := testtool.StartRedis(t)
	rdb := newClient(t, addr)
	a := New(newClient(t, addr), Options{Node: "a", KeyPrefix: "t:", Alive: alwaysAlive})
	b := New(newClient(t, addr), Options{Node: "b", KeyPrefix: "t:", Alive: alwaysAlive})
	inbox := runBus(t, b)
	waitFor(t, func() bool { return b.Ready(context.Background()) == nil })
	// Queued before a runs, so its first flush holds them all.
	for _, st := range []string{"waiting", "room", "idle"} {
		a.Save(signal.Record{ID: "s1", Token: "tok1", Node: "a", State: st})
	}
	a.Save(signal.Record{ID: "s2", Token: "tok2", Node: "a", State: "room"})
	a.Forget("tok2")
	const n = 20
	for i := range n {
		a.Publish("b", signal.Envelope{Type: "frame", Room: fmt.Sprint(i)})
	}
	sets, pubs := commandCalls(t, rdb, "set"), commandCalls(t, rdb, "spublish")
	runBus(t, a)
	for i := range n {
		select {
		case e := <-inbox:
			if e.Room != fmt.Sprint(i) {
				t.Fatalf("envelope %s arrived when %d was due", e.Room, i)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d envelopes arrived", i, n)
		}
	}
	ctx := context.Background()
	waitFor(t, func() bool { _, ok, _ := b.Load(ctx, "tok1"); return ok })
	got, _, err := b.Load(ctx, "tok1")
	if err != nil || got.State != "idle" {
		t.Fatalf("Load = %+v, %v; want the newest record (idle)", got, err)
	}
	if _, ok, _ := b.Load(ctx, "tok2"); ok {
		t.Fatal("a forgotten token's record is there")
	}
	if d := commandCalls(t, rdb, "set") - sets; d != 1 {
		t.Fatalf("%d SETs for one session's three records and a forgotten one, want 1", d)
	}
	if d := commandCalls(t, rdb, "spublish") - pubs; d != 1 {
		t.Fatalf("%d SPUBLISHes for %d envelopes to one node queued together, want 1", d, n)
	}
}

// TestBusReadsAndWritesTheSingleForm: during a rolling upgrade a node
// reads the single-envelope form of an older node (and drops a repeat
// that came in the other form), and sends an older node, which has no
// subscriber on the batch channel, every envelope in the single form, in
// order.
func TestBusReadsAndWritesTheSingleForm(t *testing.T) {
	addr := testtool.StartRedis(t)
	rdb := newClient(t, addr)
	ctx := context.Background()

	t.Run("reads", func(t *testing.T) {
		b := New(newClient(t, addr), Options{Node: "b", KeyPrefix: "r:", Alive: alwaysAlive})
		inbox := runBus(t, b)
		waitFor(t, func() bool { return b.Ready(ctx) == nil })
		one := func(seq uint64, room string) string {
			raw, _ := json.Marshal(wire{Sent: time.Now().UnixNano(), Src: "old@1", Seq: seq, Env: signal.Envelope{Type: "frame", Room: room}})
			return string(raw)
		}
		many, _ := json.Marshal(wireMany{Sent: time.Now().UnixNano(), Src: "old@1", Envs: []wireOne{
			{Seq: 1, Env: signal.Envelope{Type: "frame", Room: "again"}},
			{Seq: 2, Env: signal.Envelope{Type: "frame", Room: "r2"}},
		}})
		if err := rdb.SPublish(ctx, "r:inbox:{b}", one(1, "r1")).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.SPublish(ctx, "r:inbox:{b}:many", string(many)).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.SPublish(ctx, "r:inbox:{b}", one(3, "r3")).Err(); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"r1", "r2", "r3"} {
			select {
			case e := <-inbox:
				if e.Room != want {
					t.Fatalf("got %q, want %q", e.Room, want)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%s did not arrive", want)
			}
		}
	})

	t.Run("writes", func(t *testing.T) {
		// An older node subscribes to its inbox only.
		sub := rdb.SSubscribe(ctx, "w:inbox:{old}")
		t.Cleanup(func() { _ = sub.Close() })
		if _, err := sub.Receive(ctx); err != nil {
			t.Fatal(err)
		}
		a := New(newClient(t, addr), Options{Node: "a", KeyPrefix: "w:", Alive: alwaysAlive})
		const n = 50
		for i := range n {
			a.Publish("old", signal.Envelope{Type: "frame", Room: fmt.Sprint(i)})
		}
		runBus(t, a)
		msgs := sub.Channel()
		for i := range n {
			select {
			case m := <-msgs:
				var w wire
				if err := json.Unmarshal([]byte(m.Payload), &w); err != nil || w.Env.Room != fmt.Sprint(i) {
					t.Fatalf("message %d: %q (%v)", i, m.Payload, err)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("%d of %d envelopes reached the older node", i, n)
			}
		}
		if d := a.Dropped(); d != 0 {
			t.Fatalf("%d dropped", d)
		}
	})
}
