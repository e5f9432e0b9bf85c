package compat_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/ferryhq/ferry/llm/llmtest"
)

// chromiumPath returns the Chromium binary on PATH, or skips the test when
// there is none: the only reason a browser test may skip.
func chromiumPath(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("no chromium binary on PATH: install Debian's chromium (apt-get install chromium), as .ci/run does")
	return ""
}

// browser is a headless Chromium that resolves no host name and reaches
// nothing but loopback, with a record of what its pages did.
type browser struct {
	ctx context.Context

	mu         sync.Mutex
	requests   []string // every URL a page requested
	exceptions []string // uncaught exceptions
}

// cspRecorder runs in every page before the page's own scripts (a script
// added by the DevTools protocol is exempt from the page's policy) and
// keeps the Content-Security-Policy violations where the test reads them.
const cspRecorder = `window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", e => window.__cspViolations.push(e.violatedDirective + " " + e.blockedURI));`

func newBrowser(t testing.TB) *browser {
	t.Helper()
	alloc, cancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("no-proxy-server", true),
		// Every name fails to resolve: a page that needs a CDN breaks here
		// as it would offline.
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
	)
	t.Cleanup(cancel)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	b := &browser{ctx: ctx}
	if err := chromedp.Listen(ctx, b.record); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	err := b.do(chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: cspRecorder})
		return err
	}))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// record keeps the events the test checks. It runs in chromedp's read
// loop, so it only appends.
func (b *browser) record(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		b.requests = append(b.requests, ev.Request.URL)
	case *runtime.EventExceptionThrown:
		d := ev.ExceptionDetails
		msg := d.Text
		if d.Exception != nil && d.Exception.Description != "" {
			msg += " " + d.Exception.Description
		}
		b.exceptions = append(b.exceptions, msg)
	}
}

// do runs steps within 60 s.
func (b *browser) do(steps ...chromedp.Action[chromedp.Void]) error {
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	return chromedp.Do(ctx, steps...)
}

// click waits until the element the CSS selector finds is visible, then
// clicks it with the DOM's click(), which React's handlers take as a
// user's click wherever the element is scrolled.
func (b *browser) click(t *testing.T, selector string) {
	t.Helper()
	js, _ := json.Marshal(selector)
	err := b.do(chromedp.WaitVisible(chromedp.CSS(selector)),
		chromedp.Evaluate[chromedp.Void](`document.querySelector(`+string(js)+`).click()`))
	if err != nil {
		t.Fatalf("click %s: %v", selector, err)
	}
}

// eval evaluates a script, awaiting the promise it returns, into out.
func (b *browser) eval(t *testing.T, script string, out any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](script, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("evaluate %.80q: %v", script, err)
	}
	if err := json.Unmarshal(raw, out); err != nil {
		t.Fatalf("evaluate %.80q: %v in %s", script, err, raw)
	}
}

// checkClean fails the test for any request a page made to a host other
// than loopback, and for any uncaught exception.
func (b *browser) checkClean(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, raw := range b.requests {
		u, err := url.Parse(raw)
		if err != nil {
			t.Errorf("request to %q", raw)
			continue
		}
		switch u.Scheme {
		case "data", "blob", "about":
			continue
		case "http", "https", "ws", "wss":
			if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsLoopback() {
				continue
			}
		}
		t.Errorf("a page requested %s, off this machine", raw)
	}
	for _, e := range b.exceptions {
		t.Errorf("uncaught exception: %s", e)
	}
}

// The docs work with every other host out of reach: Swagger UI comes from
// the binary, lists every operation of the OpenAPI document, signs in with
// the OAuth2 password flow and calls the API with the token, and the page
// breaks none of its own security policy.
func TestDocsOffline(t *testing.T) {
	b := newBrowser(t)
	fake := llmtest.Start(t)
	t.Cleanup(fake.Close)
	dir := t.TempDir()
	base := "http://" + start(t, dir, []string{
		"FERRY_DATA_DIR=" + filepath.Join(dir, "data"),
		"FERRY_LOG_LEVEL=warn",
		"FERRY_SHUTDOWN_TIMEOUT=5s",
		"OLLAMA_BASE_URL=" + fake.OllamaURL(),
	})
	g := &gateway{url: base}
	email, password := "docs@example.com", "docs-password-1"
	var user struct{}
	g.call(t, "/auth/register", "", map[string]string{"email": email, "password": password}, http.StatusCreated, &user)

	// The operations, as the document lists them.
	resp, err := http.Get(base + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	err = json.NewDecoder(resp.Body).Decode(&spec)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for path, ops := range spec.Paths {
		for method := range ops {
			want = append(want, strings.ToUpper(method)+" "+path)
		}
	}
	slices.Sort(want)
	if !slices.Contains(want, "POST /ai/chat/stream") {
		t.Fatalf("the OpenAPI document lacks POST /ai/chat/stream: %v", want)
	}

	if err := b.do(chromedp.Navigate(base+"/docs"), chromedp.WaitVisible(chromedp.CSS(".opblock"))); err != nil {
		t.Fatalf("docs never listed an operation: %v", err)
	}
	var listed []string
	b.eval(t, `Array.from(document.querySelectorAll(".opblock"), o =>
		o.querySelector(".opblock-summary-method").textContent + " " + o.querySelector(".opblock-summary-path").dataset.path)`, &listed)
	slices.Sort(listed)
	if !slices.Equal(listed, want) {
		t.Errorf("docs list\n%v\nwant\n%v", listed, want)
	}
	var text string
	b.eval(t, `document.body.innerText`, &text)
	for _, s := range []string{"Chat, answered in one piece", "Sign in with email and password", "Authorize"} {
		if !strings.Contains(text, s) {
			t.Errorf("docs do not show %q", s)
		}
	}

	// Authorize with the OAuth2 password flow (/auth/login), then call
	// GET /users/me with "Try it out": the token reached the request.
	const oauth = ".auth-container:has(#oauth_username)"
	b.click(t, ".auth-wrapper button.authorize")
	if err := b.do(
		chromedp.SendKeys(chromedp.ID("oauth_username"), email),
		chromedp.SendKeys(chromedp.ID("oauth_password"), password),
	); err != nil {
		t.Fatalf("authorize: %v", err)
	}
	b.click(t, oauth+" button.authorize")
	// Signed in, the form gives way to a button that signs out.
	if err := b.do(chromedp.WaitVisible(chromedp.CSS(`.auth-container button[aria-label="Remove authorization"]`))); err != nil {
		t.Fatalf("the OAuth2 sign-in did not succeed: %v", err)
	}
	b.click(t, "button.btn-done")
	b.click(t, "#operations-users-get-me .opblock-summary-control")
	b.click(t, "#operations-users-get-me button.try-out__btn")
	b.click(t, "#operations-users-get-me button.execute")
	if err := b.do(chromedp.WaitVisible(chromedp.CSS("#operations-users-get-me .live-responses-table .response-col_status"))); err != nil {
		t.Fatalf("try it out: %v", err)
	}
	var answer string
	b.eval(t, `document.querySelector("#operations-users-get-me .live-responses-table").innerText`, &answer)
	if !strings.Contains(answer, "200") || !strings.Contains(answer, email) {
		t.Errorf("GET /users/me from the docs answered:\n%s", answer)
	}

	var violations []string
	b.eval(t, `window.__cspViolations`, &violations)
	for _, v := range violations {
		t.Errorf("Content-Security-Policy violation: %s", v)
	}
	b.checkClean(t)
}

// A front end on another origin calls Ferry with fetch and a bearer
// token, and reads JSON and a stream, when FERRY_CORS_ORIGINS lists that
// origin; from an origin it does not list, the browser refuses.
func TestCORSFromBrowser(t *testing.T) {
	b := newBrowser(t)
	frontEnd := func() *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, "<!doctype html><title>front end</title><p>front end</p>")
		}))
		t.Cleanup(s.Close)
		return s
	}
	allowed, other := frontEnd(), frontEnd()

	fake := llmtest.Start(t)
	t.Cleanup(fake.Close)
	dir := t.TempDir()
	base := "http://" + start(t, dir, []string{
		"FERRY_DATA_DIR=" + filepath.Join(dir, "data"),
		"FERRY_LOG_LEVEL=warn",
		"FERRY_SHUTDOWN_TIMEOUT=5s",
		"OLLAMA_BASE_URL=" + fake.OllamaURL(),
		"FERRY_CORS_ORIGINS=" + allowed.URL,
	})
	g := &gateway{url: base}
	g.signUp(t)

	// call runs fetch in the page and reports what the page could read.
	type result struct {
		Status    int    `json:"status"`
		Email     string `json:"email"`
		RequestID string `json:"request_id"`
		Stream    string `json:"stream"`
		Error     string `json:"error"`
	}
	arg := func(v string) string { j, _ := json.Marshal(v); return string(j) }
	call := func(t *testing.T) (me, stream result) {
		t.Helper()
		auth := arg("Bearer " + g.token)
		b.eval(t, `(async () => {
			try {
				const r = await fetch(`+arg(base+"/users/me")+`, {headers: {Authorization: `+auth+`}});
				const j = await r.json();
				return {status: r.status, email: j.email || "", request_id: r.headers.get("X-Request-ID") || ""};
			} catch (e) { return {error: String(e)}; }
		})()`, &me)
		b.eval(t, `(async () => {
			try {
				const r = await fetch(`+arg(base+"/ai/chat/stream")+`, {method: "POST",
					headers: {Authorization: `+auth+`, "Content-Type": "application/json"},
					body: JSON.stringify({message: "hello"})});
				return {status: r.status, stream: await r.text()};
			} catch (e) { return {error: String(e)}; }
		})()`, &stream)
		return me, stream
	}

	t.Run("listed origin", func(t *testing.T) {
		if err := b.do(chromedp.Navigate(allowed.URL)); err != nil {
			t.Fatal(err)
		}
		me, stream := call(t)
		if me.Status != 200 || me.Email == "" || me.RequestID == "" || me.Error != "" {
			t.Errorf("GET /users/me from %s: %+v", allowed.URL, me)
		}
		if stream.Status != 200 || !strings.Contains(stream.Stream, "conversation_id") || !strings.Contains(stream.Stream, `"done":true`) {
			t.Errorf("POST /ai/chat/stream from %s: %+v", allowed.URL, stream)
		}
	})
	t.Run("other origin", func(t *testing.T) {
		if err := b.do(chromedp.Navigate(other.URL)); err != nil {
			t.Fatal(err)
		}
		me, stream := call(t)
		if me.Error == "" || stream.Error == "" {
			t.Errorf("from %s, not listed, the page read %+v and %+v", other.URL, me, stream)
		}
	})
	b.checkClean(t)
}
