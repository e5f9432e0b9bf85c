// Package llm defines how Ferry talks to a language model: one Provider
// interface that streams a chat turn, and a Router that picks the provider
// for a model name. The adapters live in llm/anthropic, llm/openai and
// llm/ollama.
package llm

import (
	"context"
)

// Message is one entry of the conversation sent to a model.
type Message struct {
	Role    string // "user" or "assistant"
	Content string
}

// Request is one chat turn to send upstream.
type Request struct {
	Model     string // the provider's own model name, without a "provider/" prefix
	System    string
	Messages  []Message
	MaxTokens int
}

// Delta is one piece of a streamed answer. Text deltas arrive first; the
// final call to the callback has Done set, with Usage and StopReason.
type Delta struct {
	Text       string
	Done       bool
	StopReason string
	Usage      Usage
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
	// request, error event mid-stream), RateLimited (with RetryAfter),
	// Unavailable, Timeout, or the error fn returned.
	Stream(ctx context.Context, req Request, fn func(Delta) error) error
	// Models lists the models the upstream offers.
	Models(ctx context.Context) ([]Model, error)
}
