package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry/llm/llmtest"
)

// TestBurstAcrossInstances is issue 10's promise on one SQLite instance and
// on five PostgreSQL + Redis instances, each capped at one model call at a
// time:
//
//   - a user with a limit of 5 calls a minute sends 15 at once, spread over
//     the instances: exactly 5 are served and reach the upstream, 10 get
//     429;
//   - a user without a limit floods every instance (one call running and
//     three queued on each); another user's single call on each instance
//     is the next to reach the upstream there, ahead of the flood's queued
//     calls: it waits for one slot, not four.
func TestBurstAcrossInstances(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) {
			n := sharedInstances(t, engine, 5)
			fake := llmtest.Start(t)
			fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(5), Delay: 40 * time.Millisecond})
			env := withFake(engineEnv(t, engine), fake)
			env.vars["FERRY_RATE_LIMIT_RPM"] = "5"
			env.vars["FERRY_MAX_CONCURRENT"] = "1"
			env.vars["FERRY_QUEUE_SIZE"] = "100"
			env.vars["FERRY_QUEUE_TIMEOUT"] = "2m"
			env.vars["FERRY_CACHE_TTL"] = "0"
			env.vars["FERRY_METRICS_ADDR"] = "127.0.0.1:0"
			env.vars["FERRY_ADMIN_EMAIL"] = "root@example.com"
			env.vars["FERRY_ADMIN_PASSWORD"] = "root password"
			var ins []*instance
			for range n {
				ins = append(ins, start(t, env))
			}
			ctx := context.Background()
			call := func(in *instance, bearer, message string) limitedResponse {
				return in.do(t, ctx, "/ai/chat/stream", bearer, map[string]any{"message": message, "model": "claude-sonnet-4-6"})
			}
			// reached lists the messages that reached the upstream, in the
			// order they did, that contain marker.
			reached := func(marker string) []string {
				var out []string
				for _, r := range fake.Requests() {
					var body struct {
						Messages []struct {
							Content any `json:"content"`
						} `json:"messages"`
					}
					if r.JSON(&body) != nil || len(body.Messages) == 0 {
						continue
					}
					if m := fmt.Sprint(body.Messages[len(body.Messages)-1].Content); strings.Contains(m, marker) {
						out = append(out, m)
					}
				}
				return out
			}

			// A burst over the limit: exactly the limit is served.
			bursty, _ := ins[0].signUp(t, "bursty@example.com", "password123")
			var mu sync.Mutex
			statuses := map[int]int{}
			var wg sync.WaitGroup
			for i := range 15 {
				wg.Go(func() {
					r := call(ins[i%n], bursty, fmt.Sprintf("bursty call %d", i))
					mu.Lock()
					statuses[r.status]++
					mu.Unlock()
				})
			}
			wg.Wait()
			if statuses[http.StatusOK] != 5 || statuses[http.StatusTooManyRequests] != 10 {
				t.Errorf("15 calls at once against a limit of 5: %v, want 5 × 200 and 10 × 429", statuses)
			}
			if got := len(reached("bursty call")); got != 5 {
				t.Errorf("%d of the burst's calls reached the upstream, want 5", got)
			}

			// A flood: the heavy user has no limit, 4 calls per instance,
			// 1.5 s each.
			fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(5), Delay: 300 * time.Millisecond})
			admin, _ := ins[0].login(t, "root@example.com", "root password")
			heavy, _ := ins[0].signUp(t, "heavy@example.com", "password123")
			me := ins[0].must(t, http.StatusOK, "GET", "/users/me", heavy, nil)
			ins[0].must(t, http.StatusOK, "PATCH", "/users/"+me["id"].(string), admin, map[string]any{"rate_limit_rpm": -1})
			light, _ := ins[0].signUp(t, "light@example.com", "password123")
			for i, in := range ins {
				for k := range 4 {
					wg.Go(func() {
						if r := call(in, heavy, fmt.Sprintf("heavy call %d at instance-%d.", k, i)); r.status != http.StatusOK {
							t.Errorf("heavy call %d at instance %d: %d %s", k, i, r.status, r.body)
						}
					})
				}
			}
			// Each instance runs one and queues three.
			for i, in := range ins {
				deadline := time.Now().Add(time.Minute)
				for sample(scrape(t, in.metricsAddr()), "ferry_queue_depth", nil) != 3 {
					if time.Now().After(deadline) {
						t.Fatalf("instance %d never queued the flood's 3 calls", i)
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			// How many of the flood's calls had reached the upstream at each
			// instance when the light user asked.
			before := make([]int, n)
			for i := range ins {
				before[i] = len(reached(fmt.Sprintf("at instance-%d.", i)))
			}
			for i, in := range ins {
				wg.Go(func() {
					if r := call(in, light, fmt.Sprintf("light call at instance-%d.", i)); r.status != http.StatusOK {
						t.Errorf("light call at instance %d: %d %s", i, r.status, r.body)
					}
				})
			}
			wg.Wait()
			for i := range ins {
				order := reached(fmt.Sprintf("at instance-%d.", i))
				at := slices.IndexFunc(order, func(m string) bool { return strings.Contains(m, "light call") })
				// Next after the call running when it came; one more if that
				// call ended, and the next started, while the light call was
				// still on its way to the queue.
				if len(order) != 5 || at < 0 || at > before[i]+1 || at > 2 {
					t.Errorf("instance %d served, in order: %q (%d had started when the light call came); want the light call next", i, order, before[i])
				}
			}
		})
	}
}
