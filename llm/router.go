package llm

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/ferryhq/ferry"
)

// DefaultAnthropicModel is the default model when Anthropic is configured
// and FERRY_DEFAULT_MODEL is not set.
const DefaultAnthropicModel = "claude-sonnet-4-6"

// settings names, per provider, what a deployment sets to enable it.
var settings = map[string]string{
	Anthropic: "ANTHROPIC_API_KEY",
	OpenAI:    "OPENAI_API_KEY or OPENAI_BASE_URL",
	Ollama:    "OLLAMA_BASE_URL",
}

// canonical is the order providers are listed and chosen in when nothing
// else decides: the hosted default first, then local servers.
var canonical = []string{Anthropic, OpenAI, Ollama}

// ollamaFamilies are name prefixes of models commonly pulled into Ollama,
// so that "llama3.2" reaches Ollama without its ":latest" tag.
var ollamaFamilies = []string{
	"llama", "codellama", "tinyllama", "mistral", "mixtral", "gemma", "codegemma",
	"qwen", "phi", "deepseek", "llava", "granite", "smollm", "starcoder",
	"command-r", "olmo", "nomic-embed", "mxbai-embed",
}

// Router picks the provider for a model name. It is safe for concurrent
// use. It routes and does not retry: wrap each provider in WithRetry before
// handing it over.
type Router struct {
	providers    map[string]Provider
	defaultName  string // provider of the default model; empty when none is configured
	defaultModel string // the provider's own name; may be empty, see Request.Model
}

// NewRouter returns a Router over providers, the configured ones only (a
// later provider with the same Name replaces an earlier one).
//
// defaultModel (FERRY_DEFAULT_MODEL) answers requests that name no model
// and decides where Resolve sends names no other rule claims. It is routed
// by the same rules as any name. Empty means claude-sonnet-4-6 when
// Anthropic is configured, else the first model that OpenAI, or else
// Ollama, lists. NewRouter fails with Invalid when defaultModel needs a
// provider that is not configured.
func NewRouter(defaultModel string, providers ...Provider) (*Router, error) {
	r := &Router{providers: make(map[string]Provider, len(providers))}
	for _, p := range providers {
		r.providers[p.Name()] = p
	}
	for _, name := range canonical {
		if r.providers[name] != nil {
			r.defaultName = name
			break
		}
	}
	defaultModel = strings.TrimSpace(defaultModel)
	if defaultModel == "" {
		if r.defaultName == Anthropic {
			r.defaultModel = DefaultAnthropicModel
		}
		return r, nil
	}
	p, name, err := r.Resolve(defaultModel)
	if err != nil {
		var fe *ferry.Error
		if errors.As(err, &fe) {
			c := *fe
			c.Message = "FERRY_DEFAULT_MODEL: " + c.Message
			return nil, &c
		}
		return nil, err
	}
	r.defaultName, r.defaultModel = p.Name(), name
	return r, nil
}

// Resolve returns the provider for model and the provider's own name for
// it. The first rule that matches decides:
//
//  1. "anthropic/…", "openai/…" or "ollama/…": that provider, and the rest
//     of the name (which may hold more slashes, as in
//     "openai/meta-llama/Llama-3.1-8B-Instruct").
//  2. claude-*: Anthropic.
//  3. gpt-*, chatgpt-*, o1, o3, o4 and their o1-… variants: OpenAI.
//  4. A name with an Ollama tag (llama3.2:1b) or of a model family common
//     in Ollama (llama3.2, qwen2.5, mistral, gemma2, phi3, deepseek-r1 …):
//     Ollama, when it is configured; otherwise rule 5, since an
//     OpenAI-compatible local server may serve it.
//  5. Anything else, and the empty name: the provider of the default
//     model; the empty name gets the default model itself.
//
// A name routed to a provider that is not configured fails with Invalid,
// naming the setting that enables it.
func (r *Router) Resolve(model string) (Provider, string, error) {
	model = strings.TrimSpace(model)
	name, rest, err := r.route(model)
	if err != nil {
		return nil, "", err
	}
	p := r.providers[name]
	if p == nil {
		return nil, "", ferry.Errorf(ferry.Invalid,
			"model %q needs the %s provider, which is not configured; set %s", model, name, settings[name])
	}
	if model == "" {
		rest = r.defaultModel
	}
	return p, rest, nil
}

func (r *Router) route(model string) (provider, name string, err error) {
	if prefix, rest, ok := strings.Cut(model, "/"); ok && settings[prefix] != "" {
		if rest == "" {
			return "", "", ferry.InvalidField("model", fmt.Sprintf("%q names no model after the provider", model))
		}
		return prefix, rest, nil
	}
	lower := strings.ToLower(model)
	switch {
	case model == "":
	case strings.HasPrefix(lower, "claude-"):
		return Anthropic, model, nil
	case isOpenAIName(lower):
		return OpenAI, model, nil
	case r.providers[Ollama] != nil && isOllamaName(lower):
		return Ollama, model, nil
	}
	if r.defaultName == "" {
		return "", "", ferry.Errorf(ferry.Invalid,
			"no model provider is configured; set ANTHROPIC_API_KEY, OPENAI_API_KEY or OPENAI_BASE_URL, or OLLAMA_BASE_URL")
	}
	return r.defaultName, model, nil
}

func isOpenAIName(s string) bool {
	if strings.HasPrefix(s, "gpt-") || strings.HasPrefix(s, "chatgpt-") {
		return true
	}
	for _, o := range []string{"o1", "o3", "o4"} {
		if s == o || strings.HasPrefix(s, o+"-") {
			return true
		}
	}
	return false
}

func isOllamaName(s string) bool {
	if strings.Contains(s, ":") {
		return true
	}
	if strings.Contains(s, "/") {
		return false
	}
	for _, f := range ollamaFamilies {
		if strings.HasPrefix(s, f) {
			return true
		}
	}
	return false
}

// Models lists the models of every configured provider, in the order
// Anthropic, OpenAI, Ollama, asking them all at once. A provider that fails
// is left out; the error is returned only when every provider failed.
func (r *Router) Models(ctx context.Context) ([]Model, error) {
	var names []string
	for _, name := range canonical {
		if r.providers[name] != nil {
			names = append(names, name)
		}
	}
	var others []string
	for name := range r.providers {
		if settings[name] == "" {
			others = append(others, name)
		}
	}
	slices.Sort(others)
	names = append(names, others...)
	lists := make([][]Model, len(names))
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() { lists[i], errs[i] = r.providers[name].Models(ctx) })
	}
	wg.Wait()

	var all []Model
	failed := 0
	for i := range names {
		if errs[i] != nil {
			failed++
			continue
		}
		all = append(all, lists[i]...)
	}
	if failed > 0 && failed == len(names) {
		return nil, errors.Join(errs...)
	}
	return all, nil
}
