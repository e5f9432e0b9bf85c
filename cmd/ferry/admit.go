package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/config"
	"github.com/ferryhq/ferry/limit"
	"github.com/ferryhq/ferry/metrics"
)

// admission builds the rate limits (in Redis, shared by every instance,
// when there is one, else in this process's memory) and this instance's
// concurrency cap and fair queue.
func admission(cfg *config.Config, rdb *redis.Client, log *slog.Logger) *limit.Admission {
	a := &limit.Admission{Default: ferry.Limits{RPM: cfg.RateLimitRPM, TPM: cfg.RateLimitTPM}}
	if rdb != nil {
		quietRedis.Do(func() { redis.SetLogger(redisLog{log}) })
		a.Rates = limit.NewRedisRates(rdb, "ferry:rate:", time.Minute, log)
	} else {
		a.Rates = limit.NewMemoryRates(time.Minute, nil)
	}
	if cfg.MaxConcurrent > 0 {
		a.Queue = limit.NewQueue(limit.QueueOptions{Max: cfg.MaxConcurrent, PerProvider: cfg.MaxConcurrentPer,
			Size: cfg.QueueSize, Timeout: cfg.QueueTimeout})
	}
	return a
}

// quietRedis sends go-redis's own log lines to the debug level, once per
// process (the setting is the library's, global). Its pool logs each dial
// that fails, which while Redis is down is a line per request; the rate
// limits say once that Redis is down, at the error level.
var quietRedis sync.Once

type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis: "+fmt.Sprintf(format, v...))
}

// admitHook is a as the funnel's hook, telling m (nil: metrics are off)
// of its refusals, its queue's depth and each admitted call's wait.
func admitHook(a *limit.Admission, m *metrics.Metrics) chat.Admit {
	if m == nil {
		return admit(a, nil)
	}
	if a.Queue != nil {
		m.QueueDepth(a.Queue.Depth)
	}
	return m.Admit(admit(a, m.ObserveQueueWait))
}

// admit is a as the funnel's hook: a call's estimated input is counted
// until its end, when its real usage replaces the estimate. waited, if
// set, is told how long each admitted call waited for its slot.
func admit(a *limit.Admission, waited func(time.Duration)) chat.Admit {
	return func(ctx context.Context, c *chat.Call) (func(*chat.Result), error) {
		// An answer-cache hit counts as a call, but costs no tokens and
		// needs no slot.
		hit := c.Cache == chat.CacheHit
		tokens := int64(c.EstimatedInput())
		if hit {
			tokens = 0
		}
		t, err := a.Admit(ctx, limit.Request{Principal: c.Principal, Provider: c.Provider, Tokens: tokens, Unqueued: hit})
		if err != nil {
			return nil, err
		}
		c.Waited = t.Waited
		if waited != nil && a.Queue != nil {
			waited(t.Waited)
		}
		return func(res *chat.Result) {
			t.Done(int64(res.Usage.InputTokens + res.Usage.OutputTokens))
		}, nil
	}
}
