package httpapi

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/llm"
)

// runStream runs one stream in dialect d through the stream helper, with
// run's deltas, and returns what a client received.
func runStream(t *testing.T, d dialect, deltas []llm.Delta, failAfter int, fe *ferry.Error) *httptest.ResponseRecorder {
	t.Helper()
	s := &server{log: slog.New(slog.DiscardHandler), opts: Options{Draining: context.Background(), Keepalive: time.Hour}}
	w := httptest.NewRecorder()
	r := httptest.NewRequest("POST", "/", nil)
	s.stream(w, r, d, func(ctx context.Context, emit func(llm.Delta) error) (*chat.Result, error) {
		for i, delta := range deltas {
			if fe != nil && i == failAfter {
				return nil, fe
			}
			if err := emit(delta); err != nil {
				return nil, err
			}
		}
		if fe != nil {
			return nil, fe
		}
		return &chat.Result{StopReason: "end_turn", Usage: llm.Usage{InputTokens: 3, OutputTokens: len(deltas)}}, nil
	})
	return w
}

var eventNames = regexp.MustCompile(`(?m)^event: (\S+)$`)

// TestMessagesDialect checks Anthropic's exact event sequence, its error
// event after the first byte and its error shape before it.
func TestMessagesDialect(t *testing.T) {
	deltas := []llm.Delta{{Text: "Hel", More: true}, {Text: "lo"}}
	w := runStream(t, &messagesDialect{id: "msg_1", model: "claude-sonnet-4-6"}, deltas, 0, nil)
	got := strings.Join(flatten(eventNames.FindAllStringSubmatch(w.Body.String(), -1)), ",")
	want := "message_start,content_block_start,ping,content_block_delta,content_block_delta,content_block_stop,message_delta,message_stop"
	if w.Code != 200 || got != want {
		t.Errorf("status %d, events %s; want 200, %s", w.Code, got, want)
	}
	if !strings.Contains(w.Body.String(), `"stop_reason":"end_turn"`) || !strings.Contains(w.Body.String(), `"output_tokens":2`) {
		t.Errorf("message_delta lacks the stop reason or usage: %s", w.Body.String())
	}

	fe := ferry.Errorf(ferry.Unavailable, "overloaded")
	w = runStream(t, &messagesDialect{id: "msg_2"}, deltas, 1, fe)
	got = strings.Join(flatten(eventNames.FindAllStringSubmatch(w.Body.String(), -1)), ",")
	if w.Code != 200 || !strings.HasSuffix(got, "content_block_delta,error") || !strings.Contains(w.Body.String(), `"type":"overloaded_error"`) {
		t.Errorf("failure mid-stream: status %d, events %s: %s", w.Code, got, w.Body.String())
	}

	w = runStream(t, &messagesDialect{id: "msg_3"}, deltas, 0, ferry.Errorf(ferry.NotFound, "anthropic: no such model"))
	var e anthropicError
	if w.Code != 404 || json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Type != "error" || e.Error.Type != "not_found_error" {
		t.Errorf("failure before the first byte: status %d, body %s; want 404 in Anthropic's shape", w.Code, w.Body.String())
	}
}

func flatten(m [][]string) []string {
	out := make([]string, len(m))
	for i, s := range m {
		out[i] = s[1]
	}
	return out
}

// TestDialectsEndEveryStream checks, for every dialect, that a stream
// failing after its first delta ends with the dialect's error frame and
// its end, and one failing before gets the error status in the dialect's
// shape; and that deltas held back for a burst (More) still all arrive.
func TestDialectsEndEveryStream(t *testing.T) {
	c := &completion{id: "chatcmpl-1", model: "m"}
	for _, tc := range []struct {
		name        string
		d           func() dialect
		okEnd       string // the end of a good stream
		failEnd     string // the end of one that failed after its first delta
		contentType string // of an error before the first byte
		errorField  string
	}{
		{"seed", func() dialect { return &seedDialect{turn: &chat.Turn{}} }, "\"done\":true,\"stop_reason\":\"end_turn\",\"usage\":{\"input_tokens\":3,\"output_tokens\":3}}\n\n",
			"data: {\"done\":true}\n\n", "application/problem+json", "detail"},
		{"openai", func() dialect { return newChunkDialect(c) }, "data: [DONE]\n\n", "data: [DONE]\n\n", "application/json", "error"},
		{"ollama", func() dialect { return ndjsonDialect{stream: true} }, "c", "\"error\":\"upstream broke\"}\n", "application/json", "error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			deltas := []llm.Delta{{Text: "a", More: true}, {Text: "b", More: true}, {Text: "c"}}
			w := runStream(t, tc.d(), deltas, 0, nil)
			body := w.Body.String()
			if w.Code != 200 || !strings.HasSuffix(body, tc.okEnd) || strings.Count(body, "a") < 1 || !strings.Contains(body, "c") {
				t.Errorf("good stream: status %d, body %q; want it to end %q", w.Code, body, tc.okEnd)
			}
			w = runStream(t, tc.d(), deltas, 2, ferry.Errorf(ferry.Upstream, "upstream broke"))
			if w.Code != 200 || !strings.HasSuffix(w.Body.String(), tc.failEnd) || !strings.Contains(w.Body.String(), "upstream broke") {
				t.Errorf("failed mid-stream: status %d, body %q; want it to end %q", w.Code, w.Body.String(), tc.failEnd)
			}
			w = runStream(t, tc.d(), deltas, 0, &ferry.Error{Code: ferry.RateLimited, Message: "slow down", RetryAfter: 2 * time.Second})
			var body2 map[string]any
			if w.Code != http.StatusTooManyRequests || w.Header().Get("Content-Type") != tc.contentType || w.Header().Get("Retry-After") != "2" ||
				json.Unmarshal(w.Body.Bytes(), &body2) != nil || body2[tc.errorField] == nil {
				t.Errorf("failed before the first byte: status %d, Content-Type %q, Retry-After %q, body %s",
					w.Code, w.Header().Get("Content-Type"), w.Header().Get("Retry-After"), w.Body.String())
			}
		})
	}
}

// TestBurstLeavesInOneWrite checks the coalescing: the first delta leaves
// at once; after it, deltas marked More wait for the one that ends the
// burst, then leave in one write.
func TestBurstLeavesInOneWrite(t *testing.T) {
	cw := &countingWriter{ResponseRecorder: httptest.NewRecorder()}
	sw := newStreamWriter(cw, ndjsonDialect{stream: true}, 0, nil)
	for _, d := range []llm.Delta{{Text: "0\n", More: true}, {Text: "1\n", More: true}, {Text: "2\n", More: true}, {Text: "3\n"}} {
		if err := sw.text(d); err != nil {
			t.Fatal(err)
		}
		if cw.writes == 0 {
			t.Fatal("the first delta was held back; it should leave at once")
		}
	}
	if cw.writes != 2 || cw.Body.String() != "0\n1\n2\n3\n" {
		t.Errorf("%d writes of %q; want the first delta, then one write of the burst", cw.writes, cw.Body.String())
	}
	sw.text(llm.Delta{Text: "4\n"})
	if cw.writes != 3 {
		t.Errorf("a lone delta took %d writes in all; want it written at once", cw.writes)
	}
}

type countingWriter struct {
	*httptest.ResponseRecorder
	writes int
}

func (c *countingWriter) Write(b []byte) (int, error) {
	c.writes++
	return c.ResponseRecorder.Write(b)
}

var _ io.Writer = (*countingWriter)(nil)

// TestTextFramesMatchEncodingJSON checks the fast text frames against
// encoding/json, which clients already parse, on text that needs every
// kind of escape.
func TestTextFramesMatchEncodingJSON(t *testing.T) {
	texts := []string{"", "plain", "第一行\n第二行", "\"quoted\" \\ back", "data: {\"done\": true}\n\n", "tab\tcr\r\x00\x1f\x7f",
		"bad \xff utf8 \xc3", "line\u2028sep\u2029", "<html> & 'amp'", "emoji 🚀 and é"}
	empty := ""
	c := &completion{id: "chatcmpl-x", created: 17, model: `weird "model"`}
	chunk := newTextFrame(c.chunk(chunkDelta{Content: &empty}, nil), `"content":`)
	for _, text := range texts {
		var f sseFrames
		want := string(f.data(nil, textEvent{Text: text}))
		if got := string(seedText.data(nil, text)); got != want {
			t.Errorf("seed %q:\n got %q\nwant %q", text, got, want)
		}
		want = string(f.data(nil, c.chunk(chunkDelta{Content: &text}, nil)))
		if got := string(chunk.data(nil, text)); got != want {
			t.Errorf("chunk %q:\n got %q\nwant %q", text, got, want)
		}
	}
}
