package limit

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisFailures is a Failures kept in Redis, so that every instance sharing
// the Redis sees the same counts. Each key is one Redis string holding the
// count and expiring with the window, and each group a set of the keys
// reserved with it. Keys are stored hashed: Redis never sees the emails or
// addresses they contain.
type RedisFailures struct {
	rdb    redis.UniversalClient
	prefix string
	policy Policy
}

var _ Failures = (*RedisFailures)(nil)

// NewRedisFailures returns a RedisFailures applying p, storing its counts
// under keys that start with prefix (for example "ferry:").
func NewRedisFailures(rdb redis.UniversalClient, prefix string, p Policy) *RedisFailures {
	return &RedisFailures{rdb: rdb, prefix: prefix, policy: p.withDefaults()}
}

func (r *RedisFailures) redisKey(key string) string {
	h := hashKey(key)
	// 128 bits of the hash are plenty to keep keys apart.
	return r.prefix + hex.EncodeToString(h[:16])
}

func (r *RedisFailures) groupKey(group string) string {
	h := hashKey(group)
	return r.prefix + "g:" + hex.EncodeToString(h[:16])
}

// reserveScript decides and counts in one step, which is what keeps
// attempts racing on several instances from all passing a check made
// before any of them was counted. It counts unless KEYS[1] already holds
// ARGV[2] attempts, starts the window on the first, and returns the count
// before this attempt and the milliseconds left. Testing PTTL rather than
// the count also repairs a count that somehow lost its expiry, which would
// otherwise block its key forever.
var reserveScript = redis.NewScript(`
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n < tonumber(ARGV[2]) then
	redis.call('INCR', KEYS[1])
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
	redis.call('PEXPIRE', KEYS[1], ARGV[1])
	ttl = tonumber(ARGV[1])
end
return {n, ttl}
`)

// releaseScript takes one attempt back, deleting a count that reaches zero
// rather than leaving it behind, and never creating one.
var releaseScript = redis.NewScript(`
local n = tonumber(redis.call('GET', KEYS[1]) or '0')
if n <= 1 then
	redis.call('DEL', KEYS[1])
	return 0
end
return redis.call('DECR', KEYS[1])
`)

// Reserve implements Failures.
func (r *RedisFailures) Reserve(ctx context.Context, k Key) (time.Duration, error) {
	p := r.policy.scaled(k.Scale)
	key := r.redisKey(k.Name)
	var res *redis.Cmd
	_, err := r.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		res = reserveScript.Eval(ctx, pipe, []string{key}, p.Window.Milliseconds(), p.BlockAfter)
		if k.Group != "" {
			// The group outlives every key added to it: each key ends at
			// most a window after it was added.
			g := r.groupKey(k.Group)
			pipe.SAdd(ctx, g, key)
			pipe.PExpire(ctx, g, p.Window)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("limit: reserve: %w", err)
	}
	v, err := res.Int64Slice()
	if err != nil || len(v) != 2 {
		return 0, fmt.Errorf("limit: reserve: unexpected answer %v: %w", res.Val(), err)
	}
	return p.verdict(v[0], time.Duration(v[1])*time.Millisecond)
}

// Release implements Failures.
func (r *RedisFailures) Release(ctx context.Context, k Key) error {
	if err := releaseScript.Run(ctx, r.rdb, []string{r.redisKey(k.Name)}).Err(); err != nil {
		return fmt.Errorf("limit: release: %w", err)
	}
	return nil
}

// Reset implements Failures.
func (r *RedisFailures) Reset(ctx context.Context, k Key) error {
	if err := r.rdb.Del(ctx, r.redisKey(k.Name)).Err(); err != nil {
		return fmt.Errorf("limit: reset: %w", err)
	}
	return nil
}

// ResetGroup implements Failures. Keys are deleted one by one rather than
// in one DEL, which Redis Cluster refuses across slots.
func (r *RedisFailures) ResetGroup(ctx context.Context, group string) error {
	g := r.groupKey(group)
	keys, err := r.rdb.SMembers(ctx, g).Result()
	if err != nil {
		return fmt.Errorf("limit: reset group: %w", err)
	}
	_, err = r.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, k := range keys {
			pipe.Del(ctx, k)
		}
		pipe.Del(ctx, g)
		return nil
	})
	if err != nil {
		return fmt.Errorf("limit: reset group: %w", err)
	}
	return nil
}
