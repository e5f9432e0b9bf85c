package limit

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisRates is a Rates kept in Redis, exact across every instance sharing
// it: each bucket is a sorted set of the calls in its window, scored by
// when they started on Redis's own clock (instances' clocks may differ),
// with the sum of their tokens beside it, and one script trims, checks and
// counts every bucket of a call at once.
//
// Should Redis not answer, it fails open to a count of its own in this
// process's memory: the limits then hold per instance rather than across
// them, until Redis answers again, which it tries once a second meanwhile
// (the other calls do not wait on it). It logs the change either way,
// once.
type RedisRates struct {
	rdb    redis.UniversalClient
	prefix string
	window time.Duration
	log    *slog.Logger

	fallback *MemoryRates
	mu       sync.Mutex
	down     bool
	retryAt  time.Time // while down, when to try Redis again
	// local remembers the calls taken from the fallback, so that they are
	// settled where they were counted.
	local map[string]struct{}
}

var _ Rates = (*RedisRates)(nil)

// NewRedisRates returns a RedisRates counting over window (zero means a
// minute) under keys that start with prefix (for example "ferry:rate:").
// log hears when Redis stops and starts answering.
func NewRedisRates(rdb redis.UniversalClient, prefix string, window time.Duration, log *slog.Logger) *RedisRates {
	if window <= 0 {
		window = time.Minute
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &RedisRates{rdb: rdb, prefix: prefix, window: window, log: log,
		fallback: NewMemoryRates(window, nil), local: make(map[string]struct{})}
}

// Each bucket is two keys: a sorted set of the calls in the window, whose
// members are "<tokens>:<call id>" scored by when the call was counted (ms
// on Redis's clock), and beside it the sum of those members' tokens, kept
// as calls enter and leave, so that a call costs O(log n) in its bucket's
// calls rather than a read of all of them. Only a refusal by tokens reads
// the whole set, to find when enough will have left.

// takeScript trims every bucket (KEYS: each one's set, then its sum) to the
// window, decides, and counts the call in all of them or in none. ARGV:
// the window in ms, the member, the tokens, then each bucket's RPM and
// TPM. It returns whether the call was refused (1: by calls, 2: by
// tokens), the milliseconds until it would fit, and for each bucket its
// calls, tokens and the milliseconds until its oldest call leaves the
// window.
var takeScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local cost = tonumber(ARGV[3])
local function tokens(m) return tonumber(string.match(m, '^(%d+):')) end
local refused, wait = 0, 0
local calls, used, oldest = {}, {}, {}
for i = 1, #KEYS / 2 do
	local set, sum = KEYS[2 * i - 1], KEYS[2 * i]
	local u = tonumber(redis.call('GET', sum) or '0')
	local gone = redis.call('ZRANGEBYSCORE', set, '-inf', now - window)
	if #gone > 0 then
		for _, m in ipairs(gone) do u = u - tokens(m) end
		redis.call('ZREMRANGEBYSCORE', set, '-inf', now - window)
	end
	local n = redis.call('ZCARD', set)
	if n == 0 then
		u = 0
		redis.call('DEL', sum)
	elseif #gone > 0 then
		redis.call('SET', sum, u, 'KEEPTTL')
	end
	calls[i], used[i], oldest[i] = n, u, window
	if n > 0 then
		oldest[i] = tonumber(redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')[2]) + window - now
	end
	local rpm, tpm = tonumber(ARGV[2 + 2 * i]), tonumber(ARGV[3 + 2 * i])
	if rpm > 0 and n + 1 > rpm then
		-- The call fits once all but rpm-1 of the counted ones left.
		local w = tonumber(redis.call('ZRANGE', set, n - rpm, n - rpm, 'WITHSCORES')[2]) + window - now
		if w > wait then refused, wait = 1, w end
	end
	if tpm > 0 and u + cost > tpm then
		local log = redis.call('ZRANGE', set, 0, -1, 'WITHSCORES')
		for j = 1, #log, 2 do
			u = u - tokens(log[j])
			if u + cost <= tpm then
				local w = tonumber(log[j + 1]) + window - now
				if w > wait then refused, wait = 2, w end
				break
			end
		end
	end
end
local out = {refused, wait}
for i = 1, #KEYS / 2 do
	if refused == 0 then
		local set, sum = KEYS[2 * i - 1], KEYS[2 * i]
		redis.call('ZADD', set, now, ARGV[2])
		redis.call('INCRBY', sum, cost)
		redis.call('PEXPIRE', set, window)
		redis.call('PEXPIRE', sum, window)
		calls[i], used[i] = calls[i] + 1, used[i] + cost
	end
	out[#out + 1] = calls[i]
	out[#out + 1] = used[i]
	out[#out + 1] = oldest[i]
end
return out
`)

// settleScript puts the member ARGV[3] in place of ARGV[2] in every bucket
// (KEYS as takeScript's), with the same score, or only removes ARGV[2]
// when ARGV[3] is empty, moving the bucket's sum by the difference; where
// the call already left the window, it adds ARGV[3] now when ARGV[4] is
// "1" (it used tokens). ARGV[1] is the window in ms, ARGV[5] and ARGV[6]
// the tokens of ARGV[2] and ARGV[3].
var settleScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local was, used = tonumber(ARGV[5]), tonumber(ARGV[6])
for i = 1, #KEYS / 2 do
	local set, sum = KEYS[2 * i - 1], KEYS[2 * i]
	local score = redis.call('ZSCORE', set, ARGV[2])
	local add = 0
	if score then
		redis.call('ZREM', set, ARGV[2])
		add = -was
		if ARGV[3] ~= '' then
			redis.call('ZADD', set, score, ARGV[3])
			add = add + used
		end
	elseif ARGV[4] == '1' then
		redis.call('ZADD', set, now, ARGV[3])
		redis.call('PEXPIRE', set, ARGV[1])
		add = used
	end
	if add ~= 0 then
		redis.call('INCRBY', sum, add)
		if redis.call('PTTL', sum) < 0 then redis.call('PEXPIRE', sum, ARGV[1]) end
	end
end
return 0
`)

// keys are each bucket's set and sum, in the scripts' order.
func (r *RedisRates) keys(buckets []Bucket) []string {
	keys := make([]string, 0, 2*len(buckets))
	for _, b := range buckets {
		set := r.prefix + b.Key
		keys = append(keys, set, set+":tokens")
	}
	return keys
}

func member(tokens int64, id string) string {
	return strconv.FormatInt(tokens, 10) + ":" + id
}

// Take implements Rates.
func (r *RedisRates) Take(ctx context.Context, id string, buckets []Bucket, tokens int64) (Status, error) {
	tokens = cost(buckets, tokens)
	if r.skip() {
		return r.takeLocal(ctx, id, buckets, tokens)
	}
	args := make([]any, 0, 3+2*len(buckets))
	args = append(args, r.window.Milliseconds(), member(tokens, id), tokens)
	for _, b := range buckets {
		args = append(args, b.RPM, b.TPM)
	}
	v, err := takeScript.Run(ctx, r.rdb, r.keys(buckets), args...).Int64Slice()
	if err == nil && len(v) != 2+3*len(buckets) {
		err = fmt.Errorf("unexpected answer %v", v)
	}
	if err != nil {
		if ctx.Err() != nil {
			return Status{}, ctx.Err()
		}
		r.outage(err)
		return r.takeLocal(ctx, id, buckets, tokens)
	}
	r.recovered()
	states := make([]bucketState, len(buckets))
	for i := range buckets {
		s := v[2+3*i:]
		states[i] = bucketState{calls: s[0], tokens: s[1], oldest: time.Duration(s[2]) * time.Millisecond}
	}
	st := status(r.window, buckets, states)
	if v[0] != 0 {
		return st, refused(time.Duration(v[1])*time.Millisecond, v[0] == 2)
	}
	return st, nil
}

// Settle implements Rates.
func (r *RedisRates) Settle(ctx context.Context, id string, buckets []Bucket, estimated, used int64) error {
	estimated = cost(buckets, estimated)
	r.mu.Lock()
	_, local := r.local[id]
	delete(r.local, id)
	r.mu.Unlock()
	if local {
		return r.fallback.Settle(ctx, id, buckets, estimated, used)
	}
	if estimated == used {
		return nil
	}
	r.mu.Lock()
	down := r.down
	r.mu.Unlock()
	if down {
		// Take has said so in the log; the correction is lost.
		return fmt.Errorf("limit: settle: Redis is not answering")
	}
	addLate, now := "0", ""
	if used > 0 {
		addLate = "1"
	}
	if used >= 0 {
		now = member(used, id)
	}
	err := settleScript.Run(ctx, r.rdb, r.keys(buckets), r.window.Milliseconds(), member(estimated, id), now, addLate,
		estimated, max(used, 0)).Err()
	if err != nil {
		r.outage(err)
		return fmt.Errorf("limit: settle: %w", err)
	}
	return nil
}

// takeLocal takes from the fallback, remembering where the call went.
func (r *RedisRates) takeLocal(ctx context.Context, id string, buckets []Bucket, tokens int64) (Status, error) {
	st, err := r.fallback.Take(ctx, id, buckets, tokens)
	if err == nil {
		r.mu.Lock()
		r.local[id] = struct{}{}
		r.mu.Unlock()
	}
	return st, err
}

// skip reports whether Redis is down and not to be tried yet; when it is
// time to try, one caller gets false and the others keep skipping.
func (r *RedisRates) skip() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.down {
		return false
	}
	if now := time.Now(); now.After(r.retryAt) {
		r.retryAt = now.Add(time.Second)
		return false
	}
	return true
}

// outage notes that Redis failed, logging it when it is news.
func (r *RedisRates) outage(err error) {
	r.mu.Lock()
	news := !r.down
	r.down = true
	r.retryAt = time.Now().Add(time.Second)
	r.mu.Unlock()
	if news {
		r.log.Error("rate limits: Redis is not answering; counting per instance until it does", "error", err)
	}
}

// recovered notes that Redis answered, logging it when it is news.
func (r *RedisRates) recovered() {
	r.mu.Lock()
	news := r.down
	r.down = false
	r.mu.Unlock()
	if news {
		r.log.Info("rate limits: Redis answers again; counting across instances")
	}
}
