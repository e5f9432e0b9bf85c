package limit

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisFailures is a Failures kept in Redis, so that every instance sharing
// the Redis sees the same counts. Each key is one Redis string holding the
// count and expiring with the window. Keys are stored hashed: Redis never
// sees the emails or addresses they contain.
type RedisFailures struct {
	rdb    redis.UniversalClient
	prefix string
	policy Policy
}

var _ Failures = (*RedisFailures)(nil)

// NewRedisFailures returns a RedisFailures applying p, storing its counts
// under keys that start with prefix (for example "ferry:fail:").
func NewRedisFailures(rdb redis.UniversalClient, prefix string, p Policy) *RedisFailures {
	return &RedisFailures{rdb: rdb, prefix: prefix, policy: p.withDefaults()}
}

func (r *RedisFailures) redisKey(key string) string {
	h := hashKey(key)
	// 128 bits of the hash are plenty to keep keys apart.
	return r.prefix + hex.EncodeToString(h[:16])
}

// failScript counts a failure and starts the window on the first one. The
// PTTL test rather than n == 1 also repairs a count that somehow lost its
// expiry, which would otherwise block its key forever.
var failScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then
	redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
`)

// Check implements Failures.
func (r *RedisFailures) Check(ctx context.Context, key string) (time.Duration, error) {
	k := r.redisKey(key)
	var get *redis.StringCmd
	var ttl *redis.DurationCmd
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		get = p.Get(ctx, k)
		ttl = p.PTTL(ctx, k)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return 0, fmt.Errorf("limit: check failures: %w", err)
	}
	n, err := get.Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("limit: check failures: %w", err)
	}
	return r.policy.verdict(n, ttl.Val())
}

// Fail implements Failures.
func (r *RedisFailures) Fail(ctx context.Context, key string) error {
	err := failScript.Run(ctx, r.rdb, []string{r.redisKey(key)}, r.policy.Window.Milliseconds()).Err()
	if err != nil {
		return fmt.Errorf("limit: record failure: %w", err)
	}
	return nil
}

// Reset implements Failures.
func (r *RedisFailures) Reset(ctx context.Context, key string) error {
	if err := r.rdb.Del(ctx, r.redisKey(key)).Err(); err != nil {
		return fmt.Errorf("limit: reset failures: %w", err)
	}
	return nil
}
