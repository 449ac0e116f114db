package moderation

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// RedisReports keeps reports in Redis, shared by every node: one capped
// list of all reports, newest first, and one per reported session, so the
// bans built on them see what any node recorded.
type RedisReports struct {
	rdb    redis.UniversalClient
	prefix string
	max    int64
}

// NewRedisReports keeps at most max reports in each list under keyPrefix.
func NewRedisReports(rdb redis.UniversalClient, keyPrefix string, max int) *RedisReports {
	return &RedisReports{rdb: rdb, prefix: keyPrefix + "reports", max: int64(max)}
}

// Record stores r. The two lists live in different slots on a Cluster,
// so they are written as two commands rather than one transaction; a
// report lost between them is still in the other list.
func (s *RedisReports) Record(ctx context.Context, r Report) error {
	raw, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encoding report: %w", err)
	}
	pipe := s.rdb.Pipeline()
	for _, k := range []string{s.prefix, s.prefix + ":against:" + r.Reported} {
		pipe.LPush(ctx, k, raw)
		pipe.LTrim(ctx, k, 0, s.max-1)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("recording report: %w", err)
	}
	return nil
}

// Against returns the reports filed against a session, newest first.
func (s *RedisReports) Against(ctx context.Context, session string) ([]Report, error) {
	raws, err := s.rdb.LRange(ctx, s.prefix+":against:"+session, 0, -1).Result()
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
