// Package limittest gives tests a Redis to share limits through, when
// FERRY_TEST_REDIS_URL names one, with a key prefix of their own that is
// cleaned up after them.
package limittest

import (
	"context"
	"crypto/rand"
	"os"
	"testing"

	"github.com/redis/go-redis/v9"
)

// URL returns FERRY_TEST_REDIS_URL, or "" when Redis cases are to be
// skipped.
func URL() string { return os.Getenv("FERRY_TEST_REDIS_URL") }

// Redis returns a client for FERRY_TEST_REDIS_URL, closed when t ends, and
// skips t when it is unset.
func Redis(t testing.TB) *redis.Client {
	t.Helper()
	url := URL()
	if url == "" {
		t.Skip("FERRY_TEST_REDIS_URL not set: skipping Redis tests")
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("FERRY_TEST_REDIS_URL: %v", err)
	}
	rdb := redis.NewClient(opt)
	t.Cleanup(func() { rdb.Close() })
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("Redis at FERRY_TEST_REDIS_URL: %v", err)
	}
	return rdb
}

// Prefix returns a key prefix no other test uses and deletes its keys when
// t ends.
func Prefix(t testing.TB, rdb *redis.Client) string {
	prefix := "ferry-test:" + rand.Text() + ":"
	t.Cleanup(func() {
		ctx := context.Background()
		iter := rdb.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
	})
	return prefix
}
