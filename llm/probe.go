package llm

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/ferryhq/ferry"
)

// Endpoint is one configured upstream seen from outside its client: the
// setting that holds its address, the address, and how to build its client.
// Probe and WithBaseCheck use it to say which URL was tried and what to
// change.
type Endpoint struct {
	// Name is the provider's routing prefix: Anthropic, OpenAI or Ollama.
	Name string
	// URLSetting is the setting that holds BaseURL, as in
	// "ANTHROPIC_BASE_URL".
	URLSetting string
	// BaseURL is the address the setting gives.
	BaseURL string
	// New returns the provider's client, talking to BaseURL through hc.
	New func(hc *http.Client) Provider
}

// ProbeResult is what asking an upstream for its model list found.
type ProbeResult struct {
	// URL is the last URL asked, without credentials or query; BaseURL,
	// so cleaned, when no request was made.
	URL string
	// Status is the HTTP status of that request; 0 when none came back.
	Status int
	// Models counts the models the upstream lists, when Err is nil.
	Models int
	// Err is nil when the upstream answered with its model list; otherwise
	// the error llm.Provider's Models promises.
	Err error
}

// WrongBase reports whether the upstream answered 404 for its own model
// list: the base URL does not lead to the API, most often because of a /v1
// too many or too few.
func (r ProbeResult) WrongBase() bool {
	return r.Err != nil && r.Status == http.StatusNotFound
}

// Probe asks e's upstream for its model list once, without retrying,
// through rt (the transport the chat calls use), and reports what came
// back. ctx bounds the wait.
func (e Endpoint) Probe(ctx context.Context, rt http.RoundTripper) ProbeResult {
	rec := &recorder{rt: rt}
	models, err := e.New(&http.Client{Transport: rec}).Models(ctx)
	r := ProbeResult{Models: len(models), Err: err}
	r.URL, r.Status = rec.last()
	if r.URL == "" {
		r.URL = cleanURL(e.BaseURL)
	}
	return r
}

// WrongBaseError is the sentence a log shows for a probe that found a wrong
// base URL: the setting, the request that answered 404, and what to change,
// as in "ANTHROPIC_BASE_URL: GET https://…/v1/v1/models answered 404; the
// base URL should not end in /v1".
func (e Endpoint) WrongBaseError(r ProbeResult) string {
	return fmt.Sprintf("%s: GET %s answered 404; %s", e.URLSetting, r.URL, e.advice())
}

// advice says what to change in a base URL whose model list answered 404,
// judging by its shape.
func (e Endpoint) advice() string {
	base := strings.TrimRight(cleanURL(e.BaseURL), "/")
	switch e.Name {
	case Anthropic:
		if strings.HasSuffix(base, "/v1") {
			return "the base URL should not end in /v1"
		}
	case OpenAI:
		if !strings.HasSuffix(base, "/v1") {
			return "the base URL usually ends in /v1, as in http://127.0.0.1:8080/v1"
		}
	case Ollama:
		if strings.HasSuffix(base, "/api") || strings.HasSuffix(base, "/v1") {
			return "the base URL should be Ollama's root, without /api or /v1"
		}
	}
	return "check that the base URL is the root of the " + e.Name + " API"
}

// baseCheckTimeout bounds the model-list request WithBaseCheck makes after
// a 404.
const baseCheckTimeout = 5 * time.Second

// WithBaseCheck returns p, e's client, with a 404 explained. An upstream
// answers 404 both for a model it does not have and for a path it does not
// serve; after a NotFound, WithBaseCheck asks e's upstream for its model
// list (through rt): when that answers too, the 404 stays as it was, the
// upstream's own words about the model. When the model list is a 404 as
// well, the base URL is wrong, and the error becomes Upstream (a 502),
// naming the setting and what to change. The URL tried goes only into the
// error's cause, for the log: an upstream's address is the operator's
// business, not every caller's.
func WithBaseCheck(p Provider, e Endpoint, rt http.RoundTripper) Provider {
	return &baseChecked{Provider: p, e: e, rt: rt}
}

type baseChecked struct {
	Provider
	e  Endpoint
	rt http.RoundTripper
}

func (b *baseChecked) Stream(ctx context.Context, req Request, fn func(Delta) error) error {
	return b.explain(ctx, b.Provider.Stream(ctx, req, fn))
}

func (b *baseChecked) Models(ctx context.Context) ([]Model, error) {
	models, err := b.Provider.Models(ctx)
	return models, b.explain(ctx, err)
}

// explain returns err, or the wrong-base error when err is a 404 and the
// model list answers 404 too.
func (b *baseChecked) explain(ctx context.Context, err error) error {
	var fe *ferry.Error
	if !errors.As(err, &fe) || fe.Code != ferry.NotFound {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, baseCheckTimeout)
	defer cancel()
	r := b.e.Probe(pctx, b.rt)
	if !r.WrongBase() {
		return err
	}
	return &ferry.Error{Code: ferry.Upstream,
		Message: fmt.Sprintf("%s answered 404 for its own API: check %s; %s", b.e.Name, b.e.URLSetting, b.e.advice()),
		Err:     fmt.Errorf("%s: %w", b.e.WrongBaseError(r), err)}
}

// recorder is a transport that notes the last request it sent and the
// status that came back.
type recorder struct {
	rt     http.RoundTripper
	mu     sync.Mutex
	url    string
	status int
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.rt.RoundTrip(req)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.url, r.status = cleanURL(req.URL.String()), 0
	if err == nil {
		r.status = resp.StatusCode
	}
	return resp, err
}

func (r *recorder) last() (string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.url, r.status
}

// cleanURL is raw fit for a log: without user, password, query or fragment,
// any of which may hold a credential.
func cleanURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(a URL that does not parse)"
	}
	u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
	return u.String()
}
