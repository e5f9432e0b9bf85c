package chat_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/cache"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/limit/limittest"
	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/store/storetest"
)

var cacheLimits = cache.Limits{TTL: time.Hour, MaxBytes: 1 << 20, MaxEntryBytes: 256 << 10}

// eachCache runs fn per engine and per answer store: memory always, Redis
// when FERRY_TEST_REDIS_URL is set.
func eachCache(t *testing.T, fn func(t *testing.T, engine string, newStore func() cache.Store)) {
	t.Parallel()
	stores := map[string]func(t *testing.T) func() cache.Store{
		"memory": func(*testing.T) func() cache.Store {
			return func() cache.Store { return cache.NewMemory(cacheLimits, nil) }
		},
		"redis": func(t *testing.T) func() cache.Store {
			rdb := limittest.Redis(t)
			return func() cache.Store { return cache.NewRedis(rdb, limittest.Prefix(t, rdb), cacheLimits) }
		},
	}
	for _, engine := range storetest.Engines(t) {
		for name, mk := range stores {
			t.Run(engine+"/"+name, func(t *testing.T) {
				t.Parallel()
				fn(t, engine, mk(t))
			})
		}
	}
}

// turnOf runs one turn to its end, returning its deltas' texts.
func (e *env) turnOf(t *testing.T, ctx context.Context, who *ferry.Principal, req chat.Request) (*chat.Turn, *chat.Result, []string, error) {
	t.Helper()
	if req.Model == "" {
		req.Model = "claude-sonnet-4-6"
	}
	if req.Endpoint == "" {
		req.Endpoint = "/test"
	}
	turn, err := e.svc.Prepare(ctx, who, req)
	if err != nil {
		t.Fatal(err)
	}
	var deltas []string
	res, err := turn.Stream(ctx, func(d llm.Delta) error {
		deltas = append(deltas, d.Text)
		return nil
	})
	return turn, res, deltas, err
}

// TestCacheHitReplaysWithoutUpstream checks that an identical request is
// answered from the cache with the same deltas, without reaching the
// upstream, with zero tokens in the usage log (marked cached), and that
// the turn is stored all the same.
func TestCacheHitReplaysWithoutUpstream(t *testing.T) {
	eachCache(t, func(t *testing.T, engine string, newStore func() cache.Store) {
		e := newEnv(t, engine, chat.Options{Cache: newStore()})
		ctx := context.Background()
		req := chat.Request{Message: "what is a ferry?", SystemPrompt: "be brief"}
		first, res1, want, err := e.turnOf(t, ctx, e.who, req)
		if err != nil {
			t.Fatal(err)
		}
		if first.Cache != chat.CacheMiss || res1.Cached || res1.Usage.OutputTokens == 0 {
			t.Errorf("first call: cache %q, cached %v, usage %+v; want a miss with usage", first.Cache, res1.Cached, res1.Usage)
		}
		second, res2, got, err := e.turnOf(t, ctx, e.who, req)
		if err != nil {
			t.Fatal(err)
		}
		if second.Cache != chat.CacheHit || !res2.Cached {
			t.Errorf("second call: cache %q, cached %v; want a hit", second.Cache, res2.Cached)
		}
		if strings.Join(got, "|") != strings.Join(want, "|") || len(got) != 100 {
			t.Errorf("the hit streamed %d deltas %q…, want the original's %d", len(got), got[:min(3, len(got))], len(want))
		}
		if res2.Text != res1.Text || res2.StopReason != res1.StopReason || res2.Model != res1.Model || res2.Usage != (llm.Usage{}) {
			t.Errorf("hit result %q/%s/%s/%+v, want the original's text, stop reason and model with zero usage", res2.Text, res2.StopReason, res2.Model, res2.Usage)
		}
		if n := len(e.fake.Requests()); n != 1 {
			t.Errorf("the upstream saw %d requests, want 1", n)
		}
		if err := e.st.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		usage, err := e.st.UsageFor(ctx, e.who.User.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(usage) != 2 || usage[0].Cached || usage[0].OutputTokens == 0 ||
			!usage[1].Cached || usage[1].InputTokens != 0 || usage[1].OutputTokens != 0 || usage[1].Status != "complete" {
			for _, u := range usage {
				t.Logf("usage: %+v", *u)
			}
			t.Error("usage log: want the miss with its tokens, then the hit, cached, with zero tokens")
		}
		msgs, err := e.st.Messages(ctx, second.ConversationID)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 2 || msgs[0].Content != req.Message || msgs[1].Content != res1.Text || msgs[1].Status != ferry.StatusComplete {
			t.Errorf("the hit's turn was stored as %d messages, want the question and the complete answer", len(msgs))
		}
		// The conversation goes on: its history differs from a new
		// conversation's, so the next turn is a miss.
		third, _, _, err := e.turnOf(t, ctx, e.who, chat.Request{Message: req.Message, SystemPrompt: "be brief", ConversationID: second.ConversationID})
		if err != nil {
			t.Fatal(err)
		}
		if third.Cache != chat.CacheMiss {
			t.Errorf("a turn with history: cache %q, want a miss", third.Cache)
		}
	})
}

// TestCacheKeyedPerUserAndRequest checks that users never share entries,
// and that any difference in the request (system prompt, sampling, model)
// is another entry.
func TestCacheKeyedPerUserAndRequest(t *testing.T) {
	eachCache(t, func(t *testing.T, engine string, newStore func() cache.Store) {
		e := newEnv(t, engine, chat.Options{Cache: newStore()})
		ctx := context.Background()
		other := &ferry.User{ID: "other-" + engine, Email: "other-" + engine + "@example.com", PasswordHash: "h", Role: ferry.RoleUser}
		if err := e.st.CreateUser(ctx, other); err != nil {
			t.Fatal(err)
		}
		temp := 0.5
		base := chat.Request{Message: "hello"}
		for i, c := range []struct {
			who  *ferry.Principal
			req  chat.Request
			want chat.CacheState
		}{
			{e.who, base, chat.CacheMiss},
			{e.who, base, chat.CacheHit},
			{&ferry.Principal{User: other}, base, chat.CacheMiss},
			{&ferry.Principal{User: other}, base, chat.CacheHit},
			{e.who, chat.Request{Message: "hello", SystemPrompt: "other"}, chat.CacheMiss},
			{e.who, chat.Request{Message: "hello", Sampling: llm.Sampling{Temperature: &temp}}, chat.CacheMiss},
			{e.who, chat.Request{Message: "hello", MaxTokens: 7}, chat.CacheMiss},
			{e.who, chat.Request{Message: "hello", Model: "claude-opus-4-1"}, chat.CacheMiss},
			{e.who, chat.Request{Message: "hello", Sampling: llm.Sampling{Temperature: &temp}}, chat.CacheHit},
		} {
			turn, _, _, err := e.turnOf(t, ctx, c.who, c.req)
			if err != nil {
				t.Fatal(err)
			}
			if turn.Cache != c.want {
				t.Errorf("call %d: %q, want %q", i, turn.Cache, c.want)
			}
		}
		if n := len(e.fake.Requests()); n != 6 {
			t.Errorf("the upstream saw %d requests, want 6 (the misses)", n)
		}
	})
}

// TestCacheBypassed checks that a request with NoCache ("cache": false)
// is neither answered from the cache nor stored in it, and that a service
// without a cache (FERRY_CACHE_TTL=0) never caches.
func TestCacheBypassed(t *testing.T) {
	eachCache(t, func(t *testing.T, engine string, newStore func() cache.Store) {
		e := newEnv(t, engine, chat.Options{Cache: newStore()})
		ctx := context.Background()
		for i, c := range []struct {
			noCache bool
			want    chat.CacheState
		}{{true, chat.CacheOff}, {false, chat.CacheMiss}, {true, chat.CacheOff}, {false, chat.CacheHit}} {
			turn, res, _, err := e.turnOf(t, ctx, e.who, chat.Request{Message: "hello", NoCache: c.noCache})
			if err != nil {
				t.Fatal(err)
			}
			if turn.Cache != c.want || res.Cached != (c.want == chat.CacheHit) {
				t.Errorf("call %d (no cache %v): %q, cached %v; want %q", i, c.noCache, turn.Cache, res.Cached, c.want)
			}
		}
		if n := len(e.fake.Requests()); n != 3 {
			t.Errorf("the upstream saw %d requests, want 3", n)
		}
	})
	t.Run("off", func(t *testing.T) {
		e := newEnv(t, "sqlite", chat.Options{})
		for range 2 {
			turn, res, _, err := e.turnOf(t, context.Background(), e.who, chat.Request{Message: "hello"})
			if err != nil {
				t.Fatal(err)
			}
			if turn.Cache != chat.CacheOff || res.Cached {
				t.Errorf("without a cache: %q, cached %v", turn.Cache, res.Cached)
			}
		}
		if n := len(e.fake.Requests()); n != 2 {
			t.Errorf("the upstream saw %d requests, want 2", n)
		}
	})
}

// TestCacheKeepsOnlyCompleteAnswers checks that failed and cancelled
// answers are not cached: the next identical request asks the model.
func TestCacheKeepsOnlyCompleteAnswers(t *testing.T) {
	eachCache(t, func(t *testing.T, engine string, newStore func() cache.Store) {
		e := newEnv(t, engine, chat.Options{Cache: newStore()})
		ctx := context.Background()
		req := chat.Request{Message: "hello"}

		e.fake.SetScript(llmtest.Script{Break: llmtest.ErrorEvent, BreakAfter: 3})
		if _, res, _, err := e.turnOf(t, ctx, e.who, req); err == nil || res.Status != ferry.StatusFailed {
			t.Fatalf("a broken stream ended %v, %s; want failed", err, res.Status)
		}
		e.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(200), Delay: 5 * time.Millisecond})
		cctx, cancel := context.WithCancel(ctx)
		turn, err := e.svc.Prepare(cctx, e.who, chat.Request{Message: "hello", Model: "claude-sonnet-4-6", Endpoint: "/test"})
		if err != nil {
			t.Fatal(err)
		}
		res, err := turn.Stream(cctx, func(d llm.Delta) error {
			if d.Text == "tok2 " {
				cancel()
			}
			return nil
		})
		if !errors.Is(err, context.Canceled) || res.Status != ferry.StatusCancelled {
			t.Fatalf("a cancelled call ended %v, %s", err, res.Status)
		}
		e.fake.SetScript(llmtest.Script{})
		turn, _, _, err = e.turnOf(t, ctx, e.who, req)
		if err != nil {
			t.Fatal(err)
		}
		if turn.Cache != chat.CacheMiss {
			t.Errorf("after a failed and a cancelled answer: %q, want a miss", turn.Cache)
		}
		if n := len(e.fake.Requests()); n != 3 {
			t.Errorf("the upstream saw %d requests, want 3", n)
		}
	})
}

// TestCacheSingleFlight checks that 20 identical requests at once make one
// upstream call, and that each gets the whole answer.
func TestCacheSingleFlight(t *testing.T) {
	eachCache(t, func(t *testing.T, engine string, newStore func() cache.Store) {
		e := newEnv(t, engine, chat.Options{Cache: newStore()})
		e.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(50), Delay: 4 * time.Millisecond})
		want := strings.Join(llmtest.Deltas(50), "")
		const n = 20
		var wg sync.WaitGroup
		errs := make(chan error, n)
		var mu sync.Mutex
		hits := 0
		for range n {
			wg.Go(func() {
				turn, res, deltas, err := e.turnOf(t, context.Background(), e.who, chat.Request{Message: "all at once"})
				switch {
				case err != nil:
					errs <- err
				case strings.Join(deltas, "") != want || res.Text != want:
					errs <- fmt.Errorf("got %d bytes of deltas, text %d bytes; want %d", len(strings.Join(deltas, "")), len(res.Text), len(want))
				}
				mu.Lock()
				defer mu.Unlock()
				if turn.Cache == chat.CacheHit {
					hits++
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if got := len(e.fake.Requests()); got != 1 {
			t.Errorf("%d identical requests made %d upstream calls, want 1", n, got)
		}
		if hits != n-1 {
			t.Errorf("%d hits, want %d", hits, n-1)
		}
	})
}

// TestCacheFollowersOutliveTheLeader checks that followers get the whole
// answer when the leader's client leaves, and the leader's failure when
// it fails; and that the upstream call is cancelled when everyone leaves.
func TestCacheFollowersOutliveTheLeader(t *testing.T) {
	t.Parallel()
	e := newEnv(t, "sqlite", chat.Options{Cache: cache.NewMemory(cacheLimits, nil)})
	ctx := context.Background()
	e.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(100), Delay: 5 * time.Millisecond})

	lctx, leave := context.WithCancel(ctx)
	leader, first, done := e.stream(t, lctx)
	<-first
	follower, _, _, err := func() (*chat.Turn, *chat.Result, []string, error) {
		go func() { time.Sleep(50 * time.Millisecond); leave() }()
		return e.turnOf(t, ctx, e.who, chat.Request{Message: "hi"})
	}()
	if err != nil {
		t.Fatalf("the follower: %v", err)
	}
	if leader.Cache != chat.CacheMiss || follower.Cache != chat.CacheHit {
		t.Errorf("leader %q, follower %q", leader.Cache, follower.Cache)
	}
	<-done
	if n := len(e.fake.Requests()); n != 1 || e.fake.Last().Cancelled() {
		t.Errorf("%d upstream calls (cancelled %v), want 1 that ran to its end", n, e.fake.Last().Cancelled())
	}
	if err := e.st.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	msgs, err := e.st.Messages(ctx, follower.ConversationID)
	if err != nil {
		t.Fatal(err)
	}
	if got := msgs[1]; got.Status != ferry.StatusComplete || got.Content != strings.Join(llmtest.Deltas(100), "") {
		t.Errorf("the follower's answer: %s, %d bytes", got.Status, len(got.Content))
	}

	// A leader that fails: its follower hears the failure.
	e.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(100), Delay: 5 * time.Millisecond, Break: llmtest.ErrorEvent, BreakAfter: 20})
	_, first, done = e.streamMessage(t, ctx, "fail")
	<-first
	turn, res, _, err := e.turnOf(t, ctx, e.who, chat.Request{Message: "fail"})
	if turn.Cache != chat.CacheHit || err == nil || res.Status != ferry.StatusFailed {
		t.Errorf("the follower of a failed leader: %q, %v, %s", turn.Cache, err, res.Status)
	}
	if lerr := <-done; ferry.ErrorCode(lerr) != ferry.ErrorCode(err) {
		t.Errorf("leader's error %v, follower's %v", lerr, err)
	}

	// Everyone leaves: the upstream call is cancelled.
	e.fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(400), Delay: 20 * time.Millisecond})
	c1, cancel1 := context.WithCancel(ctx)
	c2, cancel2 := context.WithCancel(ctx)
	_, first1, done1 := e.streamMessage(t, c1, "leave")
	<-first1
	_, first2, done2 := e.streamMessage(t, c2, "leave")
	<-first2
	// The leader's Stream goes on running the call while the follower
	// listens; its client has gone.
	cancel1()
	time.Sleep(100 * time.Millisecond)
	if r := e.fake.Last(); r.Cancelled() {
		t.Error("the upstream call was cancelled while a follower listened")
	}
	cancel2()
	<-done2
	if err := <-done1; !errors.Is(err, context.Canceled) {
		t.Errorf("the leader ended with %v, want its client's cancellation", err)
	}
	if !e.fake.WaitCancelled(5 * time.Second) {
		t.Error("the upstream call runs on with no one listening")
	}
	if n := len(e.fake.Requests()); n != 3 {
		t.Errorf("%d upstream calls, want 3", n)
	}
}

// streamMessage starts a turn of msg and streams it in the background;
// first is closed with the first delta, and the turn's end comes on done.
func (e *env) streamMessage(t *testing.T, ctx context.Context, msg string) (turn *chat.Turn, first chan struct{}, done chan error) {
	t.Helper()
	turn, err := e.svc.Prepare(ctx, e.who, chat.Request{Message: msg, Model: "claude-sonnet-4-6", Endpoint: "/test"})
	if err != nil {
		t.Fatal(err)
	}
	first, done = make(chan struct{}), make(chan error, 1)
	go func() {
		var once sync.Once
		_, err := turn.Stream(ctx, func(llm.Delta) error {
			once.Do(func() { close(first) })
			return nil
		})
		done <- err
	}()
	return turn, first, done
}
