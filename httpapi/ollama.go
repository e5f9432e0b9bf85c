package httpapi

// Ollama's native API behind Ferry's accounts: /ollama/generate,
// /ollama/chat and /ollama/tags forward to OLLAMA_BASE_URL's /api/generate,
// /api/chat and /api/tags and pass Ollama's answers through unchanged: NDJSON
// bytes as they arrive, and Ollama's own error statuses and bodies. Code
// written for the seed's /ollama/generate, or for Ollama itself, keeps
// working; each generation is written to the usage log.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/llm/ollama"
)

// defaultOllamaModel is the model the seed's /ollama/generate used when a
// request named none.
const defaultOllamaModel = "llama3.2"

// maxOllamaLine bounds the line kept for reading usage from; a longer line
// still passes through, unread.
const maxOllamaLine = 8 << 20

// ollamaProxy forwards requests to Ollama's native API.
type ollamaProxy struct {
	base    string
	hc      *http.Client
	timeout time.Duration
	up      llm.Upstream
}

// defaultUpstreamTimeout bounds one proxied call when Services sets none; it
// is chat's default too.
const defaultUpstreamTimeout = 10 * time.Minute

func newOllamaProxy(svc Services) *ollamaProxy {
	base := strings.TrimRight(svc.OllamaURL, "/")
	if base == "" {
		base = ollama.DefaultBaseURL
	}
	hc := svc.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	timeout := svc.UpstreamTimeout
	if timeout <= 0 {
		timeout = defaultUpstreamTimeout
	}
	return &ollamaProxy{base: base, hc: hc, timeout: timeout, up: llm.Upstream{Name: llm.Ollama, URLSetting: "OLLAMA_BASE_URL"}}
}

// send makes the upstream request and returns Ollama's response, whatever
// its status; the error is for no response at all (see
// llm.Upstream.TransportError).
func (o *ollamaProxy) send(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, o.base+path, rd)
	if err != nil {
		return nil, &ferry.Error{Code: ferry.Internal, Message: "bad OLLAMA_BASE_URL", Err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/x-ndjson, application/json")
	resp, err := o.hc.Do(req)
	if err != nil {
		return nil, o.up.TransportError(ctx, err)
	}
	return resp, nil
}

// ollamaInput takes the body raw: every field Ollama knows is forwarded as
// the client sent it.
type ollamaInput struct {
	RawBody []byte
}

// ollamaOperation documents a proxied Ollama endpoint whose body is a JSON
// object with the given fields and any others Ollama takes.
func ollamaOperation(id, path, summary string, fields map[string]*huma.Schema) huma.Operation {
	props := map[string]*huma.Schema{
		"model":  {Type: "string", Default: defaultOllamaModel, Description: "Ollama's model name."},
		"stream": {Type: "boolean", Default: true, Description: "Stream NDJSON, one object per line; false: one JSON object."},
	}
	for k, v := range fields {
		props[k] = v
	}
	schema := &huma.Schema{Type: "object", AdditionalProperties: true, Properties: props,
		Description: "Ollama's own request body: fields besides these (system, options, format, images, keep_alive, …) are forwarded unchanged."}
	return huma.Operation{OperationID: id, Method: "POST", Path: path, Tags: []string{"ollama"}, Summary: summary,
		Description: "Proxied to Ollama (OLLAMA_BASE_URL). Ollama's answer passes through unchanged: NDJSON as it arrives, " +
			"or its error status and {\"error\": …} body. A failure after the stream began arrives as an {\"error\": …} line.",
		Security:         authenticated,
		SkipValidateBody: true, // ollamaBody checks the fields Ferry reads; Ollama checks the rest
		RequestBody:      &huma.RequestBody{Required: true, Content: map[string]*huma.MediaType{"application/json": {Schema: schema}}},
		Responses: map[string]*huma.Response{"200": {Description: "Ollama's answer.", Content: map[string]*huma.MediaType{
			"application/x-ndjson": {Schema: &huma.Schema{Type: "string"}},
			"application/json":     {Schema: &huma.Schema{Type: "object"}},
		}}},
	}
}

func ollamaGenerateOperation() huma.Operation {
	return ollamaOperation("ollama-generate", "/ollama/generate", "Generate with Ollama (its /api/generate)", map[string]*huma.Schema{
		"prompt": {Type: "string"}, "system": {Type: "string"},
	})
}

func ollamaChatOperation() huma.Operation {
	return ollamaOperation("ollama-chat", "/ollama/chat", "Chat with Ollama (its /api/chat)", map[string]*huma.Schema{
		"messages": {Type: "array", Items: &huma.Schema{Type: "object", AdditionalProperties: true}},
	})
}

func ollamaTagsOperation() huma.Operation {
	return huma.Operation{OperationID: "ollama-tags", Method: "GET", Path: "/ollama/tags", Tags: []string{"ollama"},
		Summary: "Ollama's models (its /api/tags), proxied", Security: authenticated,
		Responses: map[string]*huma.Response{"200": {Description: "Ollama's answer, as it sent it.",
			Content: map[string]*huma.MediaType{"application/json": {Schema: &huma.Schema{Type: "object"}}}}},
	}
}

// ollamaCall is one proxied generation, as the usage log needs it.
type ollamaCall struct {
	who      *ferry.Principal
	endpoint string
	model    string
	stream   bool
	fields   map[string]json.RawMessage // the body sent
}

// ollamaBody checks a /ollama/generate or /ollama/chat body and fills the
// seed's defaults (model llama3.2, stream true). It returns the body to
// forward, in which every other field is as the client sent it. Errors:
// Invalid.
func ollamaBody(raw []byte) ([]byte, *ollamaCall, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil || fields == nil {
		return nil, nil, ferry.Errorf(ferry.Invalid, "the body must be a JSON object")
	}
	model := defaultOllamaModel
	if v, ok := fields["model"]; ok && string(v) != "null" {
		var m string
		if err := json.Unmarshal(v, &m); err != nil {
			return nil, nil, ferry.InvalidField("model", "must be a string")
		}
		if m = strings.TrimSpace(m); m != "" {
			model = m
		}
	}
	fields["model"], _ = json.Marshal(model)
	stream := true
	if v, ok := fields["stream"]; ok && string(v) != "null" {
		if err := json.Unmarshal(v, &stream); err != nil {
			return nil, nil, ferry.InvalidField("stream", "must be true or false")
		}
	}
	fields["stream"], _ = json.Marshal(stream)
	body, err := json.Marshal(fields)
	if err != nil {
		return nil, nil, ferry.Errorf(ferry.Invalid, "the body must be a JSON object")
	}
	return body, &ollamaCall{model: model, stream: stream, fields: fields}, nil
}

// handleOllamaGenerate proxies a generation (Ollama's /api/generate or
// /api/chat, at path) and writes it to the usage log as endpoint.
func handleOllamaGenerate(s *server, o *ollamaProxy, endpoint, path string) func(context.Context, *ollamaInput) (*huma.StreamResponse, error) {
	return func(ctx context.Context, in *ollamaInput) (*huma.StreamResponse, error) {
		body, call, err := ollamaBody(in.RawBody)
		if err != nil {
			return nil, err
		}
		call.who, call.endpoint = principal(ctx), endpoint
		return &huma.StreamResponse{Body: func(hctx huma.Context) {
			r, w := humago.Unwrap(hctx)
			s.proxyOllama(r, w, o, http.MethodPost, path, body, call)
		}}, nil
	}
}

// handleOllamaTags proxies Ollama's model list. Listing is not a model
// call, so it is not in the usage log.
func handleOllamaTags(s *server, o *ollamaProxy) func(context.Context, *struct{}) (*huma.StreamResponse, error) {
	return func(context.Context, *struct{}) (*huma.StreamResponse, error) {
		return &huma.StreamResponse{Body: func(hctx huma.Context) {
			r, w := humago.Unwrap(hctx)
			s.proxyOllama(r, w, o, http.MethodGet, "/api/tags", nil, nil)
		}}, nil
	}
}

// proxyOllama sends the request and passes the answer through: Ollama's
// status, Content-Type and body bytes as they arrive, each read flushed to
// the client. The request's context reaches Ollama, so a client that
// leaves cancels the generation. With call set, the call is written to the
// usage log with the counts of Ollama's final done line.
func (s *server) proxyOllama(r *http.Request, w http.ResponseWriter, o *ollamaProxy, method, path string, body []byte, call *ollamaCall) {
	start := time.Now()
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	stop := context.AfterFunc(s.opts.Draining, func() { cancel(errDraining) })
	defer stop()
	uctx, cancelTimeout := context.WithTimeout(ctx, o.timeout)
	defer cancelTimeout()

	var tally ollamaTally
	status := ferry.StatusFailed
	if call != nil {
		defer func() { s.logOllama(r.Context(), call, &tally, status, time.Since(start)) }()
	}
	resp, err := o.send(uctx, method, path, body)
	if err != nil {
		if r.Context().Err() != nil {
			status = ferry.StatusCancelled
			return
		}
		if ctx.Err() != nil {
			err = context.Cause(ctx)
		}
		fe := s.public(r.Context(), err)
		var h http.Header
		if fe.RetryAfter > 0 {
			h = http.Header{"Retry-After": {retryAfter(fe.RetryAfter)}}
		}
		writeProblem(w, statusOf[fe.Code], fe.Message, h)
		return
	}
	defer resp.Body.Close()

	ct := resp.Header.Get("Content-Type")
	if ct == "" {
		ct = "application/json"
		if call != nil && call.stream && resp.StatusCode == http.StatusOK {
			ct = "application/x-ndjson"
		}
	}
	mt, _, _ := mime.ParseMediaType(ct)
	ndjson := mt == "application/x-ndjson"
	h := w.Header()
	h.Set("Content-Type", ct)
	if ra := resp.Header.Get("Retry-After"); ra != "" {
		h.Set("Retry-After", ra)
	}
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(resp.StatusCode)

	err = relayOllama(w, resp.Body, &tally)
	switch {
	case r.Context().Err() != nil || errors.Is(err, errClientGone):
		status = ferry.StatusCancelled
		return
	case resp.StatusCode != http.StatusOK || tally.failed:
		return // Ollama's own error, passed on
	case err != nil:
		// Ollama's stream broke or timed out, or the server is draining:
		// the client hears it as Ollama's own mid-stream error line, where
		// it can hear one.
		if ctx.Err() != nil {
			err, status = context.Cause(ctx), ferry.StatusCancelled
		} else {
			err = o.up.TransportError(uctx, err)
		}
		if ndjson {
			tally.writeError(w, s.public(r.Context(), err).Message)
		}
		return
	case call != nil && !tally.done:
		if ndjson {
			tally.writeError(w, o.up.Truncated().Message)
		}
		return
	}
	status = ferry.StatusComplete
}

// errClientGone is relayOllama's error when writing to the client failed.
var errClientGone = errors.New("client gone")

// relayOllama copies src to w as it arrives, flushing after each read, and shows
// it to tally. It returns nil at the end of src, errClientGone when w
// fails, or src's error.
func relayOllama(w http.ResponseWriter, src io.Reader, tally *ollamaTally) error {
	rc := http.NewResponseController(w)
	// A line of Ollama's stream is a token and some metadata, well under
	// 4 KiB; a larger buffer only costs memory per open stream.
	buf := make([]byte, 4<<10)
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			// Not every ResponseWriter supports deadlines; flushing is what
			// matters, so that error is ignored.
			rc.SetWriteDeadline(time.Now().Add(eventWriteTimeout))
			if _, err := w.Write(buf[:n]); err != nil {
				return errClientGone
			}
			if err := rc.Flush(); err != nil {
				return errClientGone
			}
			tally.write(buf[:n])
		}
		if rerr == io.EOF {
			tally.end()
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// ollamaTally follows the NDJSON passing through, for the usage log.
type ollamaTally struct {
	line     []byte // the line so far
	skipping bool   // the line outgrew maxOllamaLine and is not kept
	lines    int    // lines before the done line: about a token each
	final    ollamaLine
	done     bool // the done line arrived
	failed   bool // an {"error": …} line arrived
	midLine  bool // the last byte passed on was not a newline
}

type ollamaLine struct {
	Model           string `json:"model"`
	Done            bool   `json:"done"`
	PromptEvalCount int    `json:"prompt_eval_count"`
	EvalCount       int    `json:"eval_count"`
	Error           string `json:"error"`
}

// write takes the next bytes of the stream, split anywhere.
func (t *ollamaTally) write(b []byte) {
	t.midLine = b[len(b)-1] != '\n'
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			t.keep(b)
			return
		}
		t.keep(b[:i])
		if !t.skipping {
			t.parse(t.line)
		}
		t.line, t.skipping = t.line[:0], false
		b = b[i+1:]
	}
}

func (t *ollamaTally) keep(b []byte) {
	if t.skipping {
		return
	}
	if len(t.line)+len(b) > maxOllamaLine {
		t.line, t.skipping = t.line[:0], true
		return
	}
	t.line = append(t.line, b...)
}

// end reads a last line that has no newline, as a non-streaming answer
// usually has not.
func (t *ollamaTally) end() {
	if !t.skipping && len(t.line) > 0 {
		t.parse(t.line)
	}
	t.line = t.line[:0]
}

func (t *ollamaTally) parse(line []byte) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return
	}
	// Only the done line and an error line say anything the usage log needs;
	// decoding every token line would be most of the proxy's work.
	if !bytes.Contains(line, []byte(`"done":true`)) && !bytes.Contains(line, []byte(`"done": true`)) &&
		!bytes.Contains(line, []byte(`"error"`)) {
		t.lines++
		return
	}
	var l ollamaLine
	if json.Unmarshal(line, &l) != nil {
		return
	}
	switch {
	case l.Error != "":
		t.failed = true
	case l.Done:
		t.done, t.final = true, l
	default:
		t.lines++
	}
}

// writeError ends the stream with an error line in Ollama's own format.
func (t *ollamaTally) writeError(w http.ResponseWriter, message string) {
	var b []byte
	if t.midLine {
		b = append(b, '\n')
	}
	line, _ := json.Marshal(map[string]string{"error": message})
	b = append(append(b, line...), '\n')
	if _, err := w.Write(b); err == nil {
		http.NewResponseController(w).Flush()
	}
}

// logOllama writes the usage log entry of a proxied generation: Ollama's
// counts from its done line, or an estimate when there was none.
func (s *server) logOllama(ctx context.Context, call *ollamaCall, t *ollamaTally, status ferry.MessageStatus, latency time.Duration) {
	res := &chat.Result{Model: call.model, Status: status, Latency: latency}
	if t.done {
		res.Usage = llm.Usage{InputTokens: t.final.PromptEvalCount, OutputTokens: t.final.EvalCount}
		if t.final.Model != "" {
			res.Model = t.final.Model
		}
	} else {
		// Cut off before Ollama counted: estimate, so that an interrupted
		// generation is not logged as free.
		res.Usage = llm.Usage{InputTokens: estimateOllamaInput(call.fields), OutputTokens: t.lines}
	}
	s.svc.Chat.LogUsage(ctx, call.who, call.endpoint, llm.Ollama, res)
}

// estimateOllamaInput guesses the prompt's tokens from the text fields of
// a generate or chat body.
func estimateOllamaInput(fields map[string]json.RawMessage) int {
	n := 0
	for _, k := range []string{"system", "prompt"} {
		var s string
		if json.Unmarshal(fields[k], &s) == nil {
			n += chat.EstimateTokens(s)
		}
	}
	var msgs []struct {
		Content string `json:"content"`
	}
	if json.Unmarshal(fields["messages"], &msgs) == nil {
		for _, m := range msgs {
			n += chat.EstimateTokens(m.Content)
		}
	}
	return n
}
