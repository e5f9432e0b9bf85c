package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/auth"
	"github.com/ferryhq/ferry/config"
	"github.com/ferryhq/ferry/limit"
	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/storetest"
)

// BenchmarkBurst is issue 10's burst, once per iteration: three instances
// on one PostgreSQL and Redis, each capping model calls at 32, in front of
// a fake upstream that takes 200 ms an answer (10 deltas, 20 ms apart).
//
//   - limits: 1,000 users, each allowed 5 calls a minute, send 6 at once,
//     spread over the instances. Reported: calls served over a user's
//     limit (must be 0), refusals (must be 1,000), the most calls the
//     upstream saw at once (at most 96).
//
//   - fairness: one user without a limit floods 300 calls at once; 30
//     other users send one each just after. Reported: p50/p99 of the light
//     users' time to their first text, and the heavy user's p99.
//
//     FERRY_TEST_DATABASE_URL=… FERRY_TEST_REDIS_URL=… go test -run '^$' -bench BenchmarkBurst -benchtime 1x ./cmd/ferry/
func BenchmarkBurst(b *testing.B) {
	redisURL := os.Getenv("FERRY_TEST_REDIS_URL")
	if redisURL == "" || os.Getenv("FERRY_TEST_DATABASE_URL") == "" {
		b.Skip("FERRY_TEST_DATABASE_URL and FERRY_TEST_REDIS_URL must be set: the burst runs on PostgreSQL and Redis")
	}
	const users, perUser, rpm, lightUsers, heavyCalls = 1000, 6, 5, 30, 300
	fake := llmtest.Start(b)
	fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(10), Delay: 20 * time.Millisecond})
	upstream := newCountingProxy(b, fake.AnthropicURL())

	for range b.N {
		db := storetest.Database(b, "postgres")
		env := fakeEnv{vars: map[string]string{
			"DATABASE_URL": db.DSN, "SECRET_KEY": testSecretKey, "REDIS_URL": redisURL,
			"FERRY_DATA_DIR": b.TempDir(), "FERRY_SHUTDOWN_GRACE": "0s",
			"ANTHROPIC_API_KEY": "sk-ant-test", "ANTHROPIC_BASE_URL": upstream.url,
			"FERRY_RATE_LIMIT_RPM": fmt.Sprint(rpm), "FERRY_MAX_CONCURRENT": "32",
			"FERRY_QUEUE_SIZE": "10000", "FERRY_QUEUE_TIMEOUT": "5m",
		}}
		var instances []*instance
		for range 3 {
			instances = append(instances, start(b, env))
		}
		keys, heavy := burstUsers(b, db, users+lightUsers)
		client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 2000, MaxConnsPerHost: 0}}

		// Limits: every user sends perUser calls at once.
		upstream.max.Store(0)
		served := make([]atomic.Int64, users)
		var refused, failed atomic.Int64
		var wg sync.WaitGroup
		for u := range users {
			for k := range perUser {
				wg.Add(1)
				go func() {
					defer wg.Done()
					status, _ := burstCall(client, instances[(u+k)%3].url, keys[u], fmt.Sprintf("question %d of user %d", k, u))
					switch status {
					case http.StatusOK:
						served[u].Add(1)
					case http.StatusTooManyRequests:
						refused.Add(1)
					default:
						failed.Add(1)
					}
				}()
			}
		}
		wg.Wait()
		var over, under int64
		for u := range served {
			n := served[u].Load()
			over += max(0, n-rpm)
			under += max(0, rpm-n)
		}
		b.ReportMetric(float64(over), "calls-over-limit")
		b.ReportMetric(float64(under), "calls-under-limit")
		b.ReportMetric(float64(refused.Load()), "refused")
		b.ReportMetric(float64(failed.Load()), "failed")
		b.ReportMetric(float64(upstream.max.Load()), "max-upstream-in-flight")
		if over != 0 || refused.Load() != users*(perUser-rpm) || upstream.max.Load() > 96 {
			b.Errorf("limits: %d calls over a limit, %d refused (want %d), %d failed, %d at the upstream at once (cap 96)",
				over, refused.Load(), users*(perUser-rpm), failed.Load(), upstream.max.Load())
		}

		// Fairness: the heavy user floods, then the light users ask once.
		var heavyWaits, lightWaits []time.Duration
		var mu sync.Mutex
		for k := range heavyCalls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, first := burstCall(client, instances[k%3].url, heavy, fmt.Sprintf("heavy question %d", k)); first > 0 {
					mu.Lock()
					heavyWaits = append(heavyWaits, first)
					mu.Unlock()
				}
			}()
		}
		time.Sleep(50 * time.Millisecond) // the flood is queued
		for u := range lightUsers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, first := burstCall(client, instances[u%3].url, keys[users+u], fmt.Sprintf("light question %d", u)); first > 0 {
					mu.Lock()
					lightWaits = append(lightWaits, first)
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if len(lightWaits) != lightUsers || len(heavyWaits) != heavyCalls {
			b.Fatalf("fairness: %d of %d light and %d of %d heavy calls answered", len(lightWaits), lightUsers, len(heavyWaits), heavyCalls)
		}
		b.ReportMetric(ms(percentile(lightWaits, 50)), "light-p50-first-text-ms")
		b.ReportMetric(ms(percentile(lightWaits, 99)), "light-p99-first-text-ms")
		b.ReportMetric(ms(percentile(heavyWaits, 99)), "heavy-p99-first-text-ms")
	}
}

// burstUsers creates n users with an API key each, and one more without a
// rate limit, straight in the database (registering a thousand would
// meet the registration limit); it returns their keys.
func burstUsers(b *testing.B, db config.Database, n int) (keys []string, heavy string) {
	b.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, db)
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	tokens, err := auth.NewTokens([]byte(testSecretKey))
	if err != nil {
		b.Fatal(err)
	}
	svc := auth.NewService(st, tokens, limit.NewMemoryFailures(limit.Policy{}, nil),
		auth.ServiceOptions{Hasher: auth.Hasher{Params: auth.TestPasswordParams}})
	newKey := func(email string) (string, string) {
		u, err := svc.CreateUser(ctx, email, "burst password", "", ferry.RoleUser)
		if err != nil {
			b.Fatal(err)
		}
		_, key, err := svc.CreateAPIKey(ctx, u.ID, "burst", nil)
		if err != nil {
			b.Fatal(err)
		}
		return u.ID, key
	}
	for i := range n {
		_, key := newKey(fmt.Sprintf("burst-%d@example.com", i))
		keys = append(keys, key)
	}
	id, heavy := newKey("heavy@example.com")
	unlimited := int64(-1)
	if _, err := svc.UpdateUser(ctx, id, auth.UserChange{RateLimitRPM: &unlimited}); err != nil {
		b.Fatal(err)
	}
	return keys, heavy
}

// burstCall makes one /ai/chat/stream call, with a message of its own (an
// answer cache hit would not reach the upstream), and reads it to the end; it
// returns the status and, for a 200, the time to the first text.
func burstCall(client *http.Client, base, key, message string) (int, time.Duration) {
	body := fmt.Sprintf(`{"message":%q,"model":"claude-sonnet-4-6"}`, message)
	req, _ := http.NewRequest("POST", base+"/ai/chat/stream", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	var first time.Duration
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if first == 0 && bytes.Contains(sc.Bytes(), []byte(`"text"`)) {
			first = time.Since(start)
		}
	}
	return resp.StatusCode, first
}

// countingProxy passes requests to an upstream and counts how many are in
// flight at once.
type countingProxy struct {
	url           string
	inFlight, max atomic.Int64
}

func newCountingProxy(b *testing.B, target string) *countingProxy {
	u, err := url.Parse(target)
	if err != nil {
		b.Fatal(err)
	}
	p := &countingProxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := p.inFlight.Add(1)
		defer p.inFlight.Add(-1)
		for {
			m := p.max.Load()
			if n <= m || p.max.CompareAndSwap(m, n) {
				break
			}
		}
		rp.ServeHTTP(w, r)
	}))
	b.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

func percentile(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, len(s)*p/100)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
