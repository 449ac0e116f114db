package moderation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisStore keeps reports and bans in Redis, shared by every node.
// Reports: one capped list of all, newest first, and one per reported
// session. Bans: one hash of ban records by id, and one expiring key per
// banned session and per banned address hash pointing at its ban, so a
// check is one MGET. Ban keys share the {bans} hash tag: one slot on a
// Cluster, so they can be read and changed together.
type RedisStore struct {
	rdb     redis.UniversalClient
	reports string
	bans    string
	max     int64
}

// NewRedisStore keeps at most max reports in each list under keyPrefix.
func NewRedisStore(rdb redis.UniversalClient, keyPrefix string, max int) *RedisStore {
	return &RedisStore{rdb: rdb, reports: keyPrefix + "reports", bans: keyPrefix + "{bans}", max: int64(max)}
}

// Record stores r. The two lists live in different slots on a Cluster,
// so they are written as two commands rather than one transaction; a
// report lost between them is still in the other list.
func (s *RedisStore) Record(ctx context.Context, r Report) error {
	raw, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding report: %w", err)
	}
	pipe := s.rdb.Pipeline()
	for _, k := range []string{s.reports, s.reports + ":against:" + r.Reported} {
		pipe.LPush(ctx, k, raw)
		pipe.LTrim(ctx, k, 0, s.max-1)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("recording report: %w", err)
	}
	return nil
}

// Against returns the reports filed against a session, newest first.
func (s *RedisStore) Against(ctx context.Context, session string) ([]Report, error) {
	raws, err := s.rdb.LRange(ctx, s.reports+":against:"+session, 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("reading reports: %w", err)
	}
	out := make([]Report, 0, len(raws))
	for _, raw := range raws {
		var r Report
		if err := json.Unmarshal([]byte(raw), &r); err != nil {
			return nil, fmt.Errorf("decoding report: %w", err)
		}
		out = append(out, r)
	}
	return out, nil
}

func (s *RedisStore) sessionKey(id string) string { return s.bans + ":s:" + id }
func (s *RedisStore) ipKey(hash string) string    { return s.bans + ":ip:" + hash }

// PutBan stores b; its keys expire with it.
func (s *RedisStore) PutBan(ctx context.Context, b Ban) error {
	raw, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("encoding ban: %w", err)
	}
	// The keys live as long as the ban; Created and Until come from the
	// same (injected) clock, so the node's own clock does not matter.
	ttl := b.Until.Sub(b.Created)
	if ttl <= 0 {
		return nil
	}
	pipe := s.rdb.TxPipeline()
	pipe.HSet(ctx, s.bans, b.ID, raw)
	if b.Session != "" {
		pipe.Set(ctx, s.sessionKey(b.Session), b.ID, ttl)
	}
	if b.IPHash != "" {
		pipe.Set(ctx, s.ipKey(b.IPHash), b.ID, ttl)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("storing ban: %w", err)
	}
	s.changed(ctx)
	return nil
}

// changed tells every node's Watch that the bans changed. Best effort:
// the caches resync on their own as well.
func (s *RedisStore) changed(ctx context.Context) {
	_ = s.rdb.Publish(ctx, s.bans+":changed", "1").Err()
}

// Watch calls changed whenever a node changes a ban, and after every
// (re)subscription, since changes made while disconnected were missed;
// it returns when ctx ends.
func (s *RedisStore) Watch(ctx context.Context, changed func()) error {
	ps := s.rdb.Subscribe(ctx, s.bans+":changed")
	defer ps.Close()
	for {
		msg, err := ps.Receive(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			select { // go-redis reconnects on the next Receive
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
			continue
		}
		switch msg.(type) {
		case *redis.Subscription, *redis.Message:
			changed()
		}
	}
}

// FindBan returns the ban in force on the session or the address hash.
func (s *RedisStore) FindBan(ctx context.Context, session, ipHash string, now time.Time) (Ban, bool, error) {
	keys := []string{s.sessionKey(session)}
	if ipHash != "" {
		keys = append(keys, s.ipKey(ipHash))
	}
	ids, err := s.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return Ban{}, false, fmt.Errorf("checking bans: %w", err)
	}
	var hits []Ban
	for _, id := range ids {
		id, ok := id.(string)
		if !ok {
			continue
		}
		b, err := s.ban(ctx, id)
		if err != nil {
			return Ban{}, false, err
		}
		if b != nil {
			hits = append(hits, *b)
		}
	}
	found, ok := longest(now, hits...)
	return found, ok, nil
}

// ban reads one ban record; nil when it was lifted.
func (s *RedisStore) ban(ctx context.Context, id string) (*Ban, error) {
	raw, err := s.rdb.HGet(ctx, s.bans, id).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading ban: %w", err)
	}
	var b Ban
	if err := json.Unmarshal([]byte(raw), &b); err != nil {
		return nil, fmt.Errorf("decoding ban: %w", err)
	}
	return &b, nil
}

// Bans lists the bans in force and forgets the records of lapsed ones.
func (s *RedisStore) Bans(ctx context.Context, now time.Time) ([]Ban, error) {
	all, err := s.rdb.HGetAll(ctx, s.bans).Result()
	if err != nil {
		return nil, fmt.Errorf("listing bans: %w", err)
	}
	out := []Ban{}
	var lapsed []string
	for id, raw := range all {
		var b Ban
		if err := json.Unmarshal([]byte(raw), &b); err != nil || !b.Until.After(now) {
			lapsed = append(lapsed, id)
			continue
		}
		out = append(out, b)
	}
	if len(lapsed) > 0 {
		if err := s.rdb.HDel(ctx, s.bans, lapsed...).Err(); err != nil {
			return nil, fmt.Errorf("forgetting lapsed bans: %w", err)
		}
	}
	return sortBans(out), nil
}

// liftScript deletes a ban record and those of its keys that still point
// at it (a newer ban on the same session or address stays).
var liftScript = redis.NewScript(`
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
for i = 2, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then redis.call('DEL', KEYS[i]) end
end
return 1`)

// LiftBan ends a ban early; false when there is no such ban.
func (s *RedisStore) LiftBan(ctx context.Context, id string) (bool, error) {
	b, err := s.ban(ctx, id)
	if err != nil || b == nil {
		return false, err
	}
	keys := []string{s.bans}
	if b.Session != "" {
		keys = append(keys, s.sessionKey(b.Session))
	}
	if b.IPHash != "" {
		keys = append(keys, s.ipKey(b.IPHash))
	}
	n, err := liftScript.Run(ctx, s.rdb, keys, id).Int()
	if err != nil {
		return false, fmt.Errorf("lifting ban: %w", err)
	}
	s.changed(ctx)
	return n == 1, nil
}
