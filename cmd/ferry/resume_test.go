package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/llm/llmtest"
)

// sseIDs reads events from r until one with id stop (0: to the end) and
// returns the ids and the data lines seen.
func sseIDs(t *testing.T, r io.Reader, stop int) (ids []int, data []string) {
	t.Helper()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			n, err := strconv.Atoi(line[4:])
			if err != nil {
				t.Fatalf("id line %q", line)
			}
			ids = append(ids, n)
		case strings.HasPrefix(line, "data: "):
			data = append(data, line[6:])
		case line == "" && stop > 0 && len(ids) > 0 && ids[len(ids)-1] == stop:
			return ids, data
		}
	}
	return ids, data
}

// TestInstancesResumeStreams runs two instances on one PostgreSQL
// database and one Redis: a stream started on A, left, and resumed on B
// with Last-Event-ID gets the rest, each event once, then done; and a
// stop sent to B cancels the upstream call that A runs.
func TestInstancesResumeStreams(t *testing.T) {
	t.Parallel()
	if os.Getenv("FERRY_TEST_DATABASE_URL") == "" || os.Getenv("FERRY_TEST_REDIS_URL") == "" {
		t.Skip("FERRY_TEST_DATABASE_URL and FERRY_TEST_REDIS_URL not both set: skipping the two-instance test")
	}
	fake := llmtest.Start(t)
	fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(40), Delay: 25 * time.Millisecond}) // 1 s
	env := withFake(engineEnv(t, "postgres"), fake)
	a := start(t, env)
	b := start(t, env)
	access, _ := a.signUp(t, "resumer@example.com", "password123")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	actx, leave := context.WithCancel(ctx)
	resp, err := a.post(actx, "/ai/chat/stream", access, map[string]any{"message": "hi", "model": "claude-sonnet-4-6"})
	if err != nil {
		t.Fatal(err)
	}
	ids, data := sseIDs(t, resp.Body, 5)
	leave()
	resp.Body.Close()
	if fmt.Sprint(ids) != "[1 2 3 4 5]" || !strings.Contains(data[0], `"conversation_id"`) {
		t.Fatalf("first events on A: %v %v", ids, data)
	}
	convID := data[0][strings.Index(data[0], `"conversation_id":"`)+len(`"conversation_id":"`):]
	convID = convID[:strings.IndexByte(convID, '"')]

	req, _ := http.NewRequestWithContext(ctx, "GET", b.url+"/conversations/"+convID+"/stream", nil)
	req.Header.Set("Authorization", "Bearer "+access)
	req.Header.Set("Last-Event-ID", "5")
	rresp, err := b.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if rresp.StatusCode != 200 {
		t.Fatalf("resume on B: %d", rresp.StatusCode)
	}
	rest, rdata := sseIDs(t, rresp.Body, 0)
	rresp.Body.Close()
	var want []int
	for n := 6; n <= 42; n++ {
		want = append(want, n)
	}
	if fmt.Sprint(rest) != fmt.Sprint(want) || !strings.Contains(rdata[len(rdata)-1], `"done":true,"stop_reason":"end_turn"`) {
		t.Fatalf("resumed on B: ids %v, last %q", rest, rdata[len(rdata)-1])
	}
	text := ""
	for _, d := range append(data, rdata...) {
		if i := strings.Index(d, `{"text":"`); i == 0 {
			text += strings.TrimSuffix(d[len(`{"text":"`):], `"}`)
		}
	}
	if want := strings.Join(llmtest.Deltas(40), ""); text != want {
		t.Errorf("the answer from A then B: %q, want %q", text, want)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		conv := b.must(t, http.StatusOK, "GET", "/conversations/"+convID, access, nil)
		msgs := conv["messages"].([]any)
		m := msgs[len(msgs)-1].(map[string]any)
		if m["status"] == "complete" && m["content"] == text {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the answer was stored as %v", m)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Stop through B, while A generates.
	fake.Reset()
	fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(50), Break: llmtest.Hang, BreakAfter: 2})
	resp, err = a.post(ctx, "/ai/chat/stream", access, map[string]any{"message": "more", "model": "claude-sonnet-4-6", "conversation_id": convID})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sseIDs(t, resp.Body, 3)
	b.must(t, http.StatusNoContent, "POST", "/conversations/"+convID+"/stop", access, nil)
	if !fake.WaitCancelled(5 * time.Second) {
		t.Fatal("the upstream request on A was not cancelled by a stop sent to B")
	}
	_, tail := sseIDs(t, resp.Body, 0)
	if len(tail) == 0 || !strings.Contains(tail[len(tail)-1], `"stop_reason":"stopped"`) {
		t.Errorf("A's stream ended with %q; want done, stopped", tail)
	}
}
