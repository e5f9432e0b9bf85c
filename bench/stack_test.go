package main

import (
	"bytes"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/cache"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/llm/llmtest"
)

// TestStreamStackStaysSmall holds the goroutine of a streamed request to
// the 8 KB stack that a bare proxy's has. Most of a parked stream's memory
// is that goroutine's stack, and a stack only grows: one call deeper than
// 8 KB anywhere in the request's life doubles it for good (see
// httpapi/offload.go). The check runs in a child process, because the
// runtime's stack limit (debug.SetMaxStack) applies to every goroutine
// and ends the process with the stack that went over, which this test
// then prints.
//
// The routes are the benchmark's.
func TestStreamStackStaysSmall(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's instrumented frames are larger than a release build's; .ci/run runs this test without -race")
	}
	routes := []string{"/ai/chat/stream", "/ollama/generate", "/v1/chat/completions", "/v1/messages"}
	if route := os.Getenv("FERRY_TEST_STACK_ROUTE"); route != "" {
		streamWithSmallStack(t, route)
		return
	}
	for _, route := range routes {
		t.Run(strings.TrimPrefix(route, "/"), func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestStreamStackStaysSmall$")
			// GOMAXPROCS set keeps the runtime's own goroutine that would
			// update it from the CPU quota from running (and growing) while
			// the limit holds.
			cmd.Env = append(os.Environ(), "FERRY_TEST_STACK_ROUTE="+route, "GOTRACEBACK=system",
				"GOMAXPROCS="+strconv.Itoa(runtime.GOMAXPROCS(0)))
			out, err := cmd.CombinedOutput()
			if err != nil {
				if i := bytes.Index(out, []byte("goroutine stack exceeds")); i >= 0 {
					out = out[i:]
				}
				if len(out) > 12000 {
					out = out[:12000]
				}
				t.Fatalf("%s: the stream's goroutine went past 8 KB of stack (%v):\n%s", route, err, out)
			}
		})
	}
}

// streamWithSmallStack makes one streamed request to route on a
// connection of its own, with every goroutine's stack limited to 8 KB,
// after a first request that leaves Ferry's caches, pools and workers as
// a running server has them.
func streamWithSmallStack(t *testing.T, route string) {
	// With the answer cache on, as cmd/ferry runs by default: a call that
	// may be cached takes another way through chat (Call.lead).
	ps := newPartsWith(t, chat.Options{Cache: cache.NewMemory(cache.Limits{TTL: time.Hour, MaxBytes: 1 << 20, MaxEntryBytes: 1 << 16}, time.Now)})
	srv := httptest.NewServer(ps.handler)
	defer srv.Close()
	// As a parked stream: the model pauses, and the answer's progress is
	// saved (chat's SaveInterval, 2 s) while it streams. The first request
	// is the same, so that the store's writer has prepared every statement
	// (its own goroutine's stack grows then, and the limit applies to all).
	deltas := llmtest.Deltas(4)
	script := llmtest.Script{Deltas: deltas, Delay: 700 * time.Millisecond}
	ps.fake.SetScript(script)
	target := endpointOf(t, route).ferry(&ferryProc{URL: srv.URL, Key: ps.key})
	var w worker
	warm := newClient(strings.Join(deltas, ""), 1)
	defer warm.close()
	// Another question, so that the request measured is not the cache's.
	first := *target
	first.body = bytes.Replace(target.body, []byte(prompt), []byte("First: "+prompt), 1)
	if _, err := warm.stream(t.Context(), &first, &w, true); err != nil {
		t.Fatal(err)
	}
	ps.fake.Reset()
	ps.fake.SetScript(script)
	time.Sleep(100 * time.Millisecond) // the first request's last writes are committed
	fresh := newClient(strings.Join(deltas, ""), 1)
	defer fresh.close()
	old := debug.SetMaxStack(8 << 10)
	_, err := fresh.stream(t.Context(), target, &w, true)
	debug.SetMaxStack(old)
	if err != nil {
		t.Fatal(err)
	}
}
