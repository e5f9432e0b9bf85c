package main

import (
	"github.com/redis/go-redis/v9"

	"github.com/ferryhq/ferry/cache"
	"github.com/ferryhq/ferry/config"
)

// answerCache returns the answer cache: in Redis, shared by every
// instance, when there is one, else in this process's memory; nil when
// FERRY_CACHE_TTL is 0.
func answerCache(cfg *config.Config, rdb *redis.Client) cache.Store {
	if cfg.CacheTTL <= 0 {
		return nil
	}
	lim := cache.Limits{TTL: cfg.CacheTTL, MaxBytes: cfg.CacheMaxBytes, MaxEntryBytes: cfg.CacheMaxEntryBytes}
	if rdb == nil {
		return cache.NewMemory(lim, nil)
	}
	return cache.NewRedis(rdb, "ferry:cache:", lim)
}
