package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/cache"
	"github.com/ferryhq/ferry/limit/limittest"
	"github.com/ferryhq/ferry/store/storetest"
)

// answerStores are the answer caches a test runs against: memory always,
// Redis when FERRY_TEST_REDIS_URL is set.
func answerStores() map[string]func(t testing.TB) cache.Store {
	lim := cache.Limits{TTL: time.Hour, MaxBytes: 8 << 20, MaxEntryBytes: 1 << 20}
	return map[string]func(t testing.TB) cache.Store{
		"memory": func(testing.TB) cache.Store { return cache.NewMemory(lim, nil) },
		"redis": func(t testing.TB) cache.Store {
			rdb := limittest.Redis(t)
			return cache.NewRedis(rdb, limittest.Prefix(t, rdb), lim)
		},
	}
}

// chunkTexts returns the data lines of an OpenAI chunk stream, each
// chunk's delta content, and whether it ended with [DONE].
func chunkTexts(t *testing.T, r io.Reader) (contents []string, finish string, done bool) {
	t.Helper()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if line == "[DONE]" {
			done = true
			continue
		}
		var c struct {
			Choices []struct {
				Delta struct {
					Content *string `json:"content"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatalf("chunk %q: %v", line, err)
		}
		for _, ch := range c.Choices {
			if ch.Delta.Content != nil {
				contents = append(contents, *ch.Delta.Content)
			}
			if ch.FinishReason != nil {
				finish = *ch.FinishReason
			}
		}
	}
	return contents, finish, done
}

// TestAnswerCacheAPI checks the answer cache through the API: X-Cache
// says miss then hit; a hit streams the same events (per wire dialect)
// without reaching the upstream; users do not share entries; "cache":
// false bypasses it and never reaches the upstream as a field.
func TestAnswerCacheAPI(t *testing.T) {
	t.Parallel()
	for _, engine := range storetest.Engines(t) {
		for name, mk := range answerStores() {
			t.Run(engine+"/"+name, func(t *testing.T) {
				t.Parallel()
				e := &chatEnv{gateway: newGateway(t, gatewayOptions{engine: engine, cache: mk(t)})}
				e.other, _ = e.signIn(t, "b@example.com")
				ctx := context.Background()
				upstream := func() int { return len(e.fake.Requests()) }
				body := map[string]any{"message": "what is a ferry?"}

				// The seed's stream.
				var texts [2][]string
				var turns [2]streamed
				for i, want := range []string{"miss", "hit"} {
					resp := e.post(t, ctx, "/ai/chat/stream", e.token, body)
					if got := resp.Header.Get("X-Cache"); resp.StatusCode != 200 || got != want {
						t.Fatalf("stream %d: %d, X-Cache %q; want 200, %q", i, resp.StatusCode, got, want)
					}
					evs := allEvents(t, resp.Body)
					for _, ev := range evs {
						if s, ok := ev.data["text"].(string); ok {
							texts[i] = append(texts[i], s)
						}
					}
					turns[i] = parseTurn(t, evs)
				}
				if strings.Join(texts[0], "|") != strings.Join(texts[1], "|") || len(texts[1]) != 100 {
					t.Errorf("the hit streamed %d text events, the original %d, or other texts", len(texts[1]), len(texts[0]))
				}
				if turns[1].done["stop_reason"] != turns[0].done["stop_reason"] || turns[1].start["model"] != turns[0].start["model"] {
					t.Errorf("done %v / %v, start %v / %v", turns[0].done, turns[1].done, turns[0].start, turns[1].start)
				}
				if u := turns[1].done["usage"].(map[string]any); u["output_tokens"] != 0.0 {
					t.Errorf("the hit's usage %v, want zero tokens", u)
				}
				if n := upstream(); n != 1 {
					t.Errorf("upstream saw %d requests, want 1", n)
				}
				if got := e.storedAnswer(t, turns[1].start["conversation_id"].(string)); got.Content != turns[0].text {
					t.Errorf("the hit's stored answer is %d bytes, want the answer's %d", len(got.Content), len(turns[0].text))
				}

				// The same body answered whole; another user; the cache
				// turned off by the body.
				for _, c := range []struct {
					path, token string
					body        map[string]any
					want        string
					calls       int
				}{
					{"/ai/chat", e.token, body, "hit", 1},
					{"/ai/chat/stream", e.other, body, "miss", 2},
					{"/ai/chat/stream", e.other, body, "hit", 2},
					{"/ai/chat", e.token, map[string]any{"message": "what is a ferry?", "cache": false}, "miss", 3},
				} {
					resp := e.post(t, ctx, c.path, c.token, c.body)
					io.Copy(io.Discard, resp.Body)
					if got := resp.Header.Get("X-Cache"); resp.StatusCode != 200 || got != c.want {
						t.Errorf("%s %v: %d, X-Cache %q; want %q", c.path, c.body, resp.StatusCode, got, c.want)
					}
					if n := upstream(); n != c.calls {
						t.Errorf("%s %v: upstream saw %d requests, want %d", c.path, c.body, n, c.calls)
					}
				}

				// OpenAI's chunks: the hit's chunks carry the same contents.
				oa := map[string]any{"model": "claude-sonnet-4-6", "stream": true,
					"messages": []map[string]any{{"role": "user", "content": "what is a ferry?"}}}
				var contents [2][]string
				for i, want := range []string{"miss", "hit"} {
					resp := e.post(t, ctx, "/v1/chat/completions", e.key, oa)
					if got := resp.Header.Get("X-Cache"); resp.StatusCode != 200 || got != want {
						t.Fatalf("completion %d: %d, X-Cache %q; want %q", i, resp.StatusCode, got, want)
					}
					var finish string
					var done bool
					contents[i], finish, done = chunkTexts(t, resp.Body)
					if finish != "stop" || !done {
						t.Errorf("completion %d: finish %q, [DONE] %v", i, finish, done)
					}
				}
				if strings.Join(contents[0], "|") != strings.Join(contents[1], "|") || len(contents[1]) != 101 {
					t.Errorf("the hit's chunks %d, the original's %d, or other contents", len(contents[1]), len(contents[0]))
				}
				if n := upstream(); n != 4 {
					t.Errorf("upstream saw %d requests, want 4", n)
				}
				oa["cache"] = false
				resp := e.post(t, ctx, "/v1/chat/completions", e.key, oa)
				io.Copy(io.Discard, resp.Body)
				if got := resp.Header.Get("X-Cache"); resp.StatusCode != 200 || got != "miss" {
					t.Errorf(`"cache": false: %d, X-Cache %q`, resp.StatusCode, got)
				}
				if n := upstream(); n != 5 {
					t.Errorf("upstream saw %d requests, want 5", n)
				}
				if strings.Contains(string(e.fake.Last().Body), `"cache"`) {
					t.Errorf(`"cache" reached the upstream: %s`, e.fake.Last().Body)
				}

				// Anthropic's Messages: a hit, then "cache": false, which
				// stays in Ferry.
				msgs := map[string]any{"model": "claude-sonnet-4-6", "max_tokens": 100, "stream": true,
					"messages": []map[string]any{{"role": "user", "content": "what is a ferry?"}}}
				for i, c := range []struct {
					cache any
					want  string
					calls int
				}{{nil, "miss", 6}, {nil, "hit", 6}, {false, "miss", 7}, {true, "hit", 7}} {
					if c.cache != nil {
						msgs["cache"] = c.cache
					}
					resp := e.post(t, ctx, "/v1/messages", e.key, msgs)
					b, _ := io.ReadAll(resp.Body)
					if got := resp.Header.Get("X-Cache"); resp.StatusCode != 200 || got != c.want || !strings.Contains(string(b), "event: message_stop") {
						t.Errorf("messages %d (cache %v): %d, X-Cache %q; want %q: %.200s", i, c.cache, resp.StatusCode, got, c.want, b)
					}
					if n := upstream(); n != c.calls {
						t.Errorf("messages %d (cache %v): upstream saw %d requests, want %d", i, c.cache, n, c.calls)
					}
				}
				if strings.Contains(string(e.fake.Last().Body), `"cache"`) {
					t.Errorf(`"cache" reached the upstream: %s`, e.fake.Last().Body)
				}
			})
		}
	}
}

// BenchmarkCacheHit measures a cache hit through the API over real TCP,
// from sending the request to the last byte of a 100-delta answer, with
// the answers in memory and in Redis: the streamed OpenAI chunks
// (stateless: a usage-log row only) and the seed's stream (which also
// stores the turn). p50 and p99 are reported besides the mean.
func BenchmarkCacheHit(b *testing.B) {
	for _, store := range []string{"memory", "redis"} {
		for _, ep := range []struct {
			name, path string
			body       map[string]any
		}{
			{"v1-chat-completions", "/v1/chat/completions", map[string]any{"model": "claude-sonnet-4-6", "stream": true,
				"messages": []map[string]any{{"role": "user", "content": "what is a ferry?"}}}},
			{"ai-chat-stream", "/ai/chat/stream", map[string]any{"message": "what is a ferry?"}},
		} {
			b.Run(store+"/"+ep.name, func(b *testing.B) {
				g := newGateway(b, gatewayOptions{cache: answerStores()[store](b)})
				body, _ := json.Marshal(ep.body)
				client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
				b.Cleanup(client.CloseIdleConnections)
				one := func() (string, int) {
					req, _ := http.NewRequest("POST", g.url+ep.path, bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Authorization", "Bearer "+g.key)
					resp, err := client.Do(req)
					if err != nil {
						b.Fatal(err)
					}
					n, _ := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					return resp.Header.Get("X-Cache"), int(n)
				}
				one() // the miss that fills the cache
				if got, n := one(); got != "hit" || n < 1000 {
					b.Fatalf("X-Cache %q, %d bytes: the cache is not warm", got, n)
				}
				times := make([]time.Duration, 0, b.N)
				b.ResetTimer()
				for b.Loop() {
					start := time.Now()
					one()
					times = append(times, time.Since(start))
				}
				b.StopTimer()
				slices.Sort(times)
				b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(times[len(times)*99/100].Microseconds())/1000, "p99-ms")
				if n := len(g.fake.Requests()); n != 1 {
					b.Errorf("the upstream saw %d requests, want 1", n)
				}
			})
		}
	}
}
