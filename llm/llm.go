// Package llm defines how Ferry talks to a language model: one Provider
// interface that streams a chat turn, a Router that picks the provider for a
// model name, and WithRetry, which retries a failed call while that is still
// invisible to the caller. The adapters live in llm/anthropic, llm/openai and
// llm/ollama; llm/llmtest fakes their upstreams for tests.
package llm

import (
	"context"
	"strings"
)

// The routing prefixes of the providers Ferry ships. A model is named
// "prefix/name", as in "ollama/llama3.2".
const (
	Anthropic = "anthropic"
	OpenAI    = "openai"
	Ollama    = "ollama"
)

// Message is one entry of the conversation sent to a model: who said it,
// and what, as parts in order.
type Message struct {
	Role  string // "user" or "assistant"; adapters fold "system" into the system prompt
	Parts []Part
}

// TextMessage returns a message of one text part.
func TextMessage(role, text string) Message {
	return Message{Role: role, Parts: []Part{{Kind: PartText, Text: text}}}
}

// Text returns the message's text parts joined by blank lines; other parts
// are left out.
func (m Message) Text() string {
	if len(m.Parts) == 1 && m.Parts[0].Kind == PartText {
		return m.Parts[0].Text
	}
	var b strings.Builder
	for _, p := range m.Parts {
		if p.Kind != PartText {
			continue
		}
		if b.Len() > 0 {
			b.WriteString("\n\n")
		}
		b.WriteString(p.Text)
	}
	return b.String()
}

// PartKind names what a Part holds.
type PartKind string

// The kinds of part a message can carry. A Provider says which it accepts.
const (
	PartText     PartKind = "text"
	PartDocument PartKind = "document"
)

// Part is one piece of a message: text, or a document the model reads.
type Part struct {
	Kind     PartKind
	Text     string    // PartText
	Document *Document // PartDocument
}

// Document is a file sent to a model whole, as Anthropic takes a PDF.
type Document struct {
	Name      string // file name, for the model and for logs
	MediaType string // "application/pdf"
	Data      []byte
}

// Request is one chat turn to send upstream.
type Request struct {
	// Model is the provider's own model name, without a "provider/" prefix.
	// Empty means the provider's default: claude-sonnet-4-6 for Anthropic,
	// the first model the upstream lists for OpenAI-compatible servers and
	// Ollama (a local server usually serves one).
	Model     string
	System    string
	Messages  []Message
	MaxTokens int // 0: the adapter's default
	// Sampling shapes how the answer is drawn; its zero value leaves it
	// all to the upstream.
	Sampling Sampling
}

// Delta is one piece of a streamed answer. Text deltas arrive first; the
// final call to the callback has Done set, with Usage, StopReason and Model.
type Delta struct {
	Text string
	Done bool
	// StopReason is the upstream's own word for why the answer ended:
	// "end_turn" or "max_tokens" from Anthropic, "stop" or "length" from
	// OpenAI and Ollama.
	StopReason string
	Usage      Usage
	// Model is the model the upstream reports having used, which matters
	// when Request.Model was empty.
	Model string
	// More says that more of the answer has already arrived and follows at
	// once, so a writer may hold this delta back and send the burst in one
	// write; a delta without it should reach the client now.
	More bool
}

// Usage counts the tokens a turn consumed.
type Usage struct {
	InputTokens  int
	OutputTokens int
}

// Model is one model a provider offers.
type Model struct {
	ID       string // routable name: "provider/model"
	Provider string
	Name     string // the provider's own name
}

// Provider streams chat turns from one upstream.
type Provider interface {
	// Name is the provider's routing prefix: "anthropic", "openai" or "ollama".
	Name() string
	// Stream sends req upstream and calls fn with each delta as it arrives,
	// ending with a Done delta. It stops when ctx is cancelled or fn returns
	// an error. Errors are *ferry.Error with code Upstream (bad key, bad
	// request, error event mid-stream, answer cut short), RateLimited (with
	// RetryAfter), Unavailable (upstream overloaded, down or unreachable;
	// RetryAfter when it said), Timeout (ctx's deadline or the HTTP
	// client's timeout), Invalid (req.Model empty and the upstream lists no
	// model); or else the error fn returned as is; or ctx.Err() itself when
	// ctx was cancelled, so that err == context.Canceled tells a client
	// that left from a failure.
	Stream(ctx context.Context, req Request, fn func(Delta) error) error
	// Models lists the models the upstream offers, with the same errors as
	// Stream.
	Models(ctx context.Context) ([]Model, error)
	// Accepts reports whether Stream takes parts of kind k; every provider
	// takes PartText. Callers check a request's parts before sending it.
	Accepts(k PartKind) bool
	// Supports says which sampling parameters Stream honours, and in what
	// range. Callers check a request's Sampling against it (Sampling.Check)
	// before sending it; Stream leaves out what it does not support.
	Supports() Support
}
