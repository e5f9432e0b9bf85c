package main

import (
	"testing"

	"github.com/ferryhq/ferry/cache"
	"github.com/ferryhq/ferry/config"
)

// TestAnswerCacheSetting checks that FERRY_CACHE_TTL=0 turns the answer
// cache off, and that by default it is on, in memory without Redis.
func TestAnswerCacheSetting(t *testing.T) {
	for ttl, want := range map[string]bool{"": true, "0": false, "10m": true} {
		cfg, err := config.Load(func(k string) string {
			if k == "FERRY_CACHE_TTL" {
				return ttl
			}
			return ""
		}, "")
		if err != nil {
			t.Fatal(err)
		}
		got := answerCache(cfg, nil)
		if _, mem := got.(*cache.Memory); (got != nil) != want || (want && !mem) {
			t.Errorf("FERRY_CACHE_TTL=%q: %T, want on: %v, in memory", ttl, got, want)
		}
	}
}
