package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"
)

// redisStorage keeps certmagic's account, certificates and challenge
// tokens in Redis, so every node on one Redis serves the same
// certificate, any node answers a challenge another started, and only
// one node at a time obtains or renews (the locks below).
//
// Every key shares the {acme} hash tag: on a Redis Cluster they sit in
// one slot, so the index and the values change in one transaction.
type redisStorage struct {
	rdb    redis.UniversalClient
	prefix string // store.redis.key_prefix + "{acme}:"
	// lockTTL is how long a lock outlives a node that died holding it;
	// a holder pushes it every lockTTL/3.
	lockTTL time.Duration
	poll    time.Duration // how often a waiting Lock tries again

	mu    sync.Mutex
	held  map[string]heldLock
	newID func() string
}

type heldLock struct {
	token string
	stop  chan struct{}
}

func newRedisStorage(rdb redis.UniversalClient, keyPrefix string) *redisStorage {
	return &redisStorage{
		rdb: rdb, prefix: keyPrefix + "{acme}:",
		lockTTL: time.Minute, poll: time.Second,
		held: map[string]heldLock{},
		newID: func() string {
			b := make([]byte, 16)
			_, _ = rand.Read(b)
			return hex.EncodeToString(b)
		},
	}
}

func (s *redisStorage) valueKey(key string) string { return s.prefix + "v:" + key }
func (s *redisStorage) indexKey() string           { return s.prefix + "keys" }
func (s *redisStorage) lockKey(name string) string {
	return s.prefix + "lock:" + name
}

// Store writes value under key, with its time for Stat.
func (s *redisStorage) Store(ctx context.Context, key string, value []byte) error {
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, s.valueKey(key), "v", value, "m", strconv.FormatInt(time.Now().UnixNano(), 10))
		p.SAdd(ctx, s.indexKey(), key)
		return nil
	})
	if err != nil {
		return fmt.Errorf("acme storage: storing %s: %w", key, err)
	}
	return nil
}

// Load returns fs.ErrNotExist for a missing key, as certmagic expects.
func (s *redisStorage) Load(ctx context.Context, key string) ([]byte, error) {
	b, err := s.rdb.HGet(ctx, s.valueKey(key), "v").Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fs.ErrNotExist
	}
	if err != nil {
		return nil, fmt.Errorf("acme storage: loading %s: %w", key, err)
	}
	return b, nil
}

// keys lists every stored key at or under key ("a/b" covers "a/b/c").
func (s *redisStorage) keys(ctx context.Context, key string) ([]string, error) {
	all, err := s.rdb.SMembers(ctx, s.indexKey()).Result()
	if err != nil {
		return nil, fmt.Errorf("acme storage: listing: %w", err)
	}
	var out []string
	for _, k := range all {
		if key == "" || k == key || strings.HasPrefix(k, key+"/") {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Delete removes key and, like a directory, everything under it.
func (s *redisStorage) Delete(ctx context.Context, key string) error {
	ks, err := s.keys(ctx, key)
	if err != nil {
		return err
	}
	if len(ks) == 0 {
		return fs.ErrNotExist
	}
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range ks {
			p.Del(ctx, s.valueKey(k))
			p.SRem(ctx, s.indexKey(), k)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("acme storage: deleting %s: %w", key, err)
	}
	return nil
}

func (s *redisStorage) Exists(ctx context.Context, key string) bool {
	ks, err := s.keys(ctx, key)
	return err == nil && len(ks) > 0
}

// List names what is under path: every key when recursive, else the
// direct children (a "directory" once, as path/child).
func (s *redisStorage) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	ks, err := s.keys(ctx, path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, k := range ks {
		if k == path {
			continue
		}
		if !recursive {
			rest := strings.TrimPrefix(k, path+"/")
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				k = path + "/" + rest[:i]
			}
		}
		if len(out) == 0 || out[len(out)-1] != k {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return nil, fs.ErrNotExist
	}
	return out, nil
}

func (s *redisStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	vals, err := s.rdb.HMGet(ctx, s.valueKey(key), "v", "m").Result()
	if err != nil {
		return certmagic.KeyInfo{}, fmt.Errorf("acme storage: stat %s: %w", key, err)
	}
	if v, ok := vals[0].(string); ok {
		ns, _ := strconv.ParseInt(fmt.Sprint(vals[1]), 10, 64)
		return certmagic.KeyInfo{Key: key, Modified: time.Unix(0, ns), Size: int64(len(v)), IsTerminal: true}, nil
	}
	if s.Exists(ctx, key) {
		return certmagic.KeyInfo{Key: key, IsTerminal: false}, nil
	}
	return certmagic.KeyInfo{}, fs.ErrNotExist
}

// unlockScript deletes a lock only while it is still this holder's.
var unlockScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// refreshScript pushes a lock's expiry only while it is this holder's.
var refreshScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("PEXPIRE", KEYS[1], ARGV[2]) end return 0`)

// Lock waits until name is free across all nodes, or ctx ends. The lock
// expires lockTTL after its holder stops pushing it (a crashed node).
func (s *redisStorage) Lock(ctx context.Context, name string) error {
	token := s.newID()
	for {
		// An error (Redis away) is a lock not got: try again until ctx ends.
		if ok, err := s.rdb.SetNX(ctx, s.lockKey(name), token, s.lockTTL).Result(); err == nil && ok {
			stop := make(chan struct{})
			s.mu.Lock()
			s.held[name] = heldLock{token: token, stop: stop}
			s.mu.Unlock()
			go s.keepLock(name, token, stop)
			return nil
		}
		t := time.NewTimer(s.poll)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("acme storage: waiting for lock %s: %w", name, ctx.Err())
		case <-t.C:
		}
	}
}

func (s *redisStorage) keepLock(name, token string, stop chan struct{}) {
	t := time.NewTicker(s.lockTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), s.lockTTL/3)
			_ = refreshScript.Run(ctx, s.rdb, []string{s.lockKey(name)}, token, s.lockTTL.Milliseconds()).Err()
			cancel()
		}
	}
}

func (s *redisStorage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	h, ok := s.held[name]
	delete(s.held, name)
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("acme storage: unlocking %s: not held by this node", name)
	}
	close(h.stop)
	if err := unlockScript.Run(ctx, s.rdb, []string{s.lockKey(name)}, h.token).Err(); err != nil {
		return fmt.Errorf("acme storage: unlocking %s: %w", name, err)
	}
	return nil
}

// String names the storage in certmagic's logs and keys its in-memory
// caches.
func (s *redisStorage) String() string { return "redis:" + s.prefix }
