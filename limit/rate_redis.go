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
	// pending are the corrections waiting to go with the next call, flush
	// the timer that sends them alone if none comes.
	pending []correction
	flush   *time.Timer
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

// countScript first applies the corrections of calls that have ended
// (Settle queues them, so that they ride along with the next call's round
// trip instead of making one of their own), then, if it is given one,
// decides a call and counts it in all its buckets or in none.
//
// ARGV[1] is the window in ms and ARGV[2] the number of corrections; each
// correction is then six arguments: how many buckets it has, the member
// the call was counted as, the member it becomes (empty: forget the call),
// '1' to count the new member now if the call has left the window, and
// the two members' tokens. A correction that was already applied changes
// nothing. The call, if any, follows: its member and tokens, then each of
// its buckets' RPM and TPM. KEYS are the corrections' buckets, then the
// call's, each as its set and its sum.
//
// It returns whether the call was refused (1: by calls, 2: by tokens), the
// milliseconds until it would fit, and for each of its buckets the calls,
// the tokens and the milliseconds until its oldest call leaves the window.
var countScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local function tokens(m) return tonumber(string.match(m, '^(%d+):')) end
local k, a = 1, 3
for _ = 1, tonumber(ARGV[2]) do
	local old, new, late = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
	local was, used = tonumber(ARGV[a + 4]), tonumber(ARGV[a + 5])
	for _ = 1, tonumber(ARGV[a]) do
		local set, sum = KEYS[k], KEYS[k + 1]
		local score = redis.call('ZSCORE', set, old)
		local add = 0
		if score then
			redis.call('ZREM', set, old)
			add = -was
			if new ~= '' then
				redis.call('ZADD', set, score, new)
				add = add + used
			end
		elseif late == '1' and not redis.call('ZSCORE', set, new) then
			redis.call('ZADD', set, now, new)
			redis.call('PEXPIRE', set, window)
			add = used
		end
		if add ~= 0 then
			redis.call('INCRBY', sum, add)
			if redis.call('PTTL', sum) < 0 then redis.call('PEXPIRE', sum, window) end
		end
		k = k + 2
	end
	a = a + 6
end
if a > #ARGV then return {0, 0} end
local member, cost = ARGV[a], tonumber(ARGV[a + 1])
a = a + 2
local first, n = k, (#KEYS - k + 1) / 2
local refused, wait = 0, 0
local calls, used, oldest = {}, {}, {}
for i = 1, n do
	local set, sum = KEYS[first + 2 * i - 2], KEYS[first + 2 * i - 1]
	local u = tonumber(redis.call('GET', sum) or '0')
	local c = redis.call('ZCARD', set)
	local head = c > 0 and tonumber(redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')[2])
	if head and head <= now - window then
		for _, m in ipairs(redis.call('ZRANGEBYSCORE', set, '-inf', now - window)) do u = u - tokens(m) end
		redis.call('ZREMRANGEBYSCORE', set, '-inf', now - window)
		c = redis.call('ZCARD', set)
		head = c > 0 and tonumber(redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')[2])
		if c == 0 then
			u = 0
			redis.call('DEL', sum)
		else
			redis.call('SET', sum, u, 'PX', window)
		end
	end
	calls[i], used[i], oldest[i] = c, u, window
	if head then oldest[i] = head + window - now end
	local rpm, tpm = tonumber(ARGV[a + 2 * i - 2]), tonumber(ARGV[a + 2 * i - 1])
	if rpm > 0 and c + 1 > rpm then
		-- The call fits once all but rpm-1 of the counted ones left.
		local w = tonumber(redis.call('ZRANGE', set, c - rpm, c - rpm, 'WITHSCORES')[2]) + window - now
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
for i = 1, n do
	if refused == 0 then
		local set, sum = KEYS[first + 2 * i - 2], KEYS[first + 2 * i - 1]
		redis.call('ZADD', set, now, member)
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

// correction is a Settle waiting to be applied by countScript.
type correction struct {
	buckets  []Bucket
	old, new string // new "": forget the call
	late     bool   // count new now if the call has left the window
	was, now int64  // old's and new's tokens
}

// settleDelay is how long a correction waits for a call to ride along
// with before it is sent alone.
const settleDelay = 10 * time.Millisecond

// script returns countScript's keys and arguments for the corrections
// cs and, when buckets is not nil, the call id.
func (r *RedisRates) script(cs []correction, id string, buckets []Bucket, tokens int64) (keys []string, args []any) {
	args = append(args, r.window.Milliseconds(), len(cs))
	for _, c := range cs {
		keys = r.appendKeys(keys, c.buckets)
		late := "0"
		if c.late {
			late = "1"
		}
		args = append(args, len(c.buckets), c.old, c.new, late, c.was, c.now)
	}
	if buckets != nil {
		keys = r.appendKeys(keys, buckets)
		args = append(args, member(tokens, id), tokens)
		for _, b := range buckets {
			args = append(args, b.RPM, b.TPM)
		}
	}
	return keys, args
}

// appendKeys appends each bucket's set and sum, in countScript's order.
func (r *RedisRates) appendKeys(keys []string, buckets []Bucket) []string {
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
	cs := r.corrections()
	keys, args := r.script(cs, id, buckets, tokens)
	v, err := countScript.Run(ctx, r.rdb, keys, args...).Int64Slice()
	if err == nil && len(v) != 2+3*len(buckets) {
		err = fmt.Errorf("unexpected answer %v", v)
	}
	if err != nil {
		if ctx.Err() != nil {
			// Redis is well; the corrections go with the next call (a
			// second application changes nothing).
			r.requeue(cs)
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

// Settle implements Rates. The correction is not sent at once: it goes
// with the next call this instance counts, in the same round trip, or
// after settleDelay on its own if no call comes; so this instance's next
// call always meets it, and the other instances' within settleDelay.
func (r *RedisRates) Settle(ctx context.Context, id string, buckets []Bucket, estimated, used int64) error {
	estimated = cost(buckets, estimated)
	r.mu.Lock()
	_, local := r.local[id]
	delete(r.local, id)
	down := r.down
	r.mu.Unlock()
	if local {
		return r.fallback.Settle(ctx, id, buckets, estimated, used)
	}
	if !changes(buckets, estimated, used) {
		return nil
	}
	if down {
		// Take has said so in the log; the correction is lost.
		return fmt.Errorf("limit: settle: Redis is not answering")
	}
	c := correction{buckets: buckets, old: member(estimated, id), late: used > 0, was: estimated, now: max(used, 0)}
	if used >= 0 {
		c.new = member(used, id)
	}
	r.requeue([]correction{c})
	return nil
}

// requeue adds cs to the corrections the next call carries, and makes sure
// they are sent within settleDelay if none comes.
func (r *RedisRates) requeue(cs []correction) {
	if len(cs) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending = append(r.pending, cs...)
	if r.flush == nil {
		r.flush = time.AfterFunc(settleDelay, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			r.Flush(ctx)
		})
	}
}

// corrections takes the corrections waiting to be sent.
func (r *RedisRates) corrections() []correction {
	r.mu.Lock()
	defer r.mu.Unlock()
	cs := r.pending
	r.pending = nil
	if r.flush != nil {
		r.flush.Stop()
		r.flush = nil
	}
	return cs
}

// Flush sends the corrections waiting for a call: at shutdown, or when
// none came within settleDelay.
func (r *RedisRates) Flush(ctx context.Context) error {
	cs := r.corrections()
	if len(cs) == 0 {
		return nil
	}
	keys, args := r.script(cs, "", nil, 0)
	if err := countScript.Run(ctx, r.rdb, keys, args...).Err(); err != nil {
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
