package cache

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
)

// Redis is a Store in Redis, shared by every instance using it: one string
// per entry, set to expire after Limits.TTL. Entries over
// Limits.MaxEntryBytes (encoded) are not stored; Redis's own maxmemory
// policy bounds the whole.
type Redis struct {
	rdb    redis.UniversalClient
	prefix string
	lim    Limits
}

var _ Store = (*Redis)(nil)

// NewRedis returns a Redis store keeping entries under keys that start
// with prefix (for example "ferry:cache:").
func NewRedis(rdb redis.UniversalClient, prefix string, lim Limits) *Redis {
	return &Redis{rdb: rdb, prefix: prefix, lim: lim}
}

// Get implements Store. An entry that does not decode (written by another
// version, say) is a miss.
func (r *Redis) Get(ctx context.Context, key string) (*Entry, bool, error) {
	b, err := r.rdb.Get(ctx, r.prefix+key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	e, err := decode(b)
	if err != nil {
		return nil, false, nil
	}
	return e, true, nil
}

// Put implements Store.
func (r *Redis) Put(ctx context.Context, key string, e *Entry) error {
	b, err := encode(e)
	if err != nil {
		return err
	}
	if len(b) > r.lim.MaxEntryBytes {
		return nil
	}
	return r.rdb.Set(ctx, r.prefix+key, b, r.lim.TTL).Err()
}
