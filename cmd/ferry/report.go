package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/llm"
)

// probeTimeout bounds how long the start-up report waits for each upstream
// to list its models.
const probeTimeout = 3 * time.Second

// noProvider is the advice logged when no model provider answered: the
// settings that enable one. A chat would otherwise be the first to tell,
// with a 503.
const noProvider = "set ANTHROPIC_API_KEY for Anthropic; OPENAI_API_KEY for OpenAI, " +
	"or OPENAI_BASE_URL (with OPENAI_API_KEY if it needs one) for another OpenAI-compatible server; " +
	"or OLLAMA_BASE_URL for an Ollama elsewhere than http://localhost:11434. " +
	"Until one answers, chats fail; ferry serve --help lists every setting"

// report logs, once the server listens on addr, where its API docs are, and
// for each enabled provider whether it answered: asked for their model
// lists all at once through tr, each within probeTimeout. A base URL that
// answers 404 is logged as an error naming the setting and the URL tried;
// when no provider answered, a warning names the settings that enable
// one. Nothing logged holds a key: URLs lose their credentials and
// queries, and errors are shown by their message, which never carries one.
func report(ctx context.Context, log *slog.Logger, addr net.Addr, endpoints []llm.Endpoint, tr http.RoundTripper) {
	log.Info("API docs", "url", docsURL(addr))

	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	results := make([]llm.ProbeResult, len(endpoints))
	var wg sync.WaitGroup
	for i, e := range endpoints {
		wg.Go(func() { results[i] = e.Probe(ctx, tr) })
	}
	wg.Wait()

	usable := 0
	for i, e := range endpoints {
		r := results[i]
		attrs := []any{"provider", e.Name, "url", r.URL}
		switch {
		case r.Err == nil:
			usable++
			log.Info("provider answered", append(attrs, "models", r.Models)...)
		case r.WrongBase():
			log.Error("provider base URL is wrong", append(attrs, "error", e.WrongBaseError(r))...)
		case errors.Is(r.Err, context.Canceled):
			return // shutting down: the rest is moot
		default:
			log.Warn("provider did not answer", append(attrs, "error", message(r.Err))...)
		}
	}
	if usable == 0 {
		log.Warn("no model provider is usable", "fix", noProvider)
	}
}

// docsURL is where a browser on this machine finds the API docs: the
// address listened on, with localhost for an unspecified one (0.0.0.0, ::).
func docsURL(addr net.Addr) string {
	a, ok := addr.(*net.TCPAddr)
	if !ok {
		return "http://" + addr.String() + "/docs"
	}
	host := a.IP.String()
	if a.IP.IsUnspecified() {
		host = "localhost"
	}
	return "http://" + net.JoinHostPort(host, strconv.Itoa(a.Port)) + "/docs"
}

// message is err as a log line about an upstream shows it: a *ferry.Error's
// message, which names the setting to check and never a key, else the
// error itself.
func message(err error) string {
	var fe *ferry.Error
	if errors.As(err, &fe) {
		return fe.Message
	}
	return err.Error()
}
