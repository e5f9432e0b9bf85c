package compat_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/ferryhq/ferry/llm/llmtest"
)

// fourPagesPDF is a real PDF of four pages of text, in the shared data
// beside the clone (see ../../shared/data/README.md).
const fourPagesPDF = "../../shared/data/pdfs/pypdf-sample-files/004-pdflatex-4-pages/pdflatex-4-pages.pdf"

// sharedFile returns the absolute path of a file of the shared data. A
// missing file fails the test here: Chromium takes a path that does not
// exist for an upload without a word, and the page then waits for nothing.
func sharedFile(t *testing.T, path string) string {
	t.Helper()
	abs, err := filepath.Abs(path)
	if err == nil {
		_, err = os.Stat(abs)
	}
	if err != nil {
		t.Fatalf("the shared data must be beside the clone (../shared): %v", err)
	}
	return abs
}

var screenshots struct {
	once sync.Once
	dir  string
}

// screenshotOnFailure saves what the browser shows when t fails, into a
// directory the log names (FERRY_SCREENSHOTS, or a new one under the
// system's temporary directory, kept after the test).
func (b *browser) screenshotOnFailure(t *testing.T) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		screenshots.once.Do(func() {
			screenshots.dir = os.Getenv("FERRY_SCREENSHOTS")
			if screenshots.dir == "" {
				screenshots.dir, _ = os.MkdirTemp("", "ferry-web-screenshots-")
			}
			os.MkdirAll(screenshots.dir, 0o755)
		})
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		defer cancel()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Logf("no screenshot: %v", err)
			return
		}
		name := filepath.Join(screenshots.dir, regexp.MustCompile(`[^A-Za-z0-9_.-]+`).ReplaceAllString(t.Name(), "_")+".png")
		if err := os.WriteFile(name, png, 0o644); err != nil {
			t.Logf("no screenshot: %v", err)
			return
		}
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Logf("screenshot: %s\npage text:\n%s", name, text)
	})
}

// waitFor polls a JavaScript condition until it is true, failing after
// timeout with what it was waiting for.
func (b *browser) waitFor(t *testing.T, what, cond string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!!(`+cond+`)`))
		cancel()
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s (%s): %v", timeout, what, cond, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// text returns the text of the element the CSS selector finds, "" when
// there is none.
func (b *browser) text(t *testing.T, selector string) string {
	t.Helper()
	js, _ := json.Marshal(selector)
	var s string
	b.eval(t, `(document.querySelector(`+string(js)+`) || {}).innerText || ""`, &s)
	return s
}

// typeIn sets an input's value, as typing would.
func (b *browser) typeIn(t *testing.T, selector, value string) {
	t.Helper()
	js, _ := json.Marshal(selector)
	v, _ := json.Marshal(value)
	var ok bool
	b.eval(t, `(() => { const e = document.querySelector(`+string(js)+`); if (!e) return false;
		e.value = `+string(v)+`; e.dispatchEvent(new Event("input", {bubbles: true})); return true; })()`, &ok)
	if !ok {
		t.Fatalf("no %s to type in", selector)
	}
}

// lastAnswer is the selector of the chat's last answer.
const lastAnswer = "#messages .msg.assistant:last-of-type"

// answerDone is true when the chat's last answer has stopped streaming.
const answerDone = `document.querySelector("` + lastAnswer + `") && !document.querySelector("` + lastAnswer + `.streaming") && document.getElementById("stop").hidden`

// The web page, in Debian's Chromium with every other host out of reach,
// against the real binary and a fake upstream: sign up, a streamed chat
// rendered as Markdown, stop, regenerate, a reload in the middle of an
// answer, a hostile answer that must not run, a PDF question, and a
// collection's answer citing a page.
func TestWebPage(t *testing.T) {
	for _, engine := range []string{"sqlite", "postgres"} {
		t.Run(engine, func(t *testing.T) { testWebPage(t, engine) })
	}
}

func testWebPage(t *testing.T, engine string) {
	g := newGateway(t, gatewayOptions{engine: engine}) // skips PostgreSQL without FERRY_TEST_DATABASE_URL
	b := newBrowser(t)
	fake := g.fake
	base := g.url
	email, password := "web-user@example.com", "web-password-1"

	// access returns the access token the page holds.
	access := func(t *testing.T) string {
		var tok string
		b.eval(t, `JSON.parse(localStorage.getItem("ferry.tokens")).access`, &tok)
		return tok
	}

	t.Run("sign up", func(t *testing.T) {
		b.screenshotOnFailure(t)
		if err := b.do(chromedp.Navigate(base + "/")); err != nil {
			t.Fatal(err)
		}
		b.waitFor(t, "the sign-in form", `!document.getElementById("auth").hidden`, 10*time.Second)
		b.typeIn(t, "#email", email)
		b.typeIn(t, "#password", password)
		b.click(t, "#signup")
		b.waitFor(t, "the chat view", `!document.getElementById("chat").hidden && document.getElementById("who").textContent === "`+email+`"`, 10*time.Second)
		b.waitFor(t, "the model list", `document.querySelectorAll("#model option").length > 0`, 10*time.Second)
		var models []string
		b.eval(t, `Array.from(document.querySelectorAll("#model option"), o => o.value)`, &models)
		for _, want := range []string{"anthropic/claude-sonnet-4-6", "openai/gpt-4o-mini", "ollama/llama3.2:latest"} {
			if !strings.Contains(strings.Join(models, " "), want) {
				t.Errorf("model picker lacks %s: %v", want, models)
			}
		}
	})

	// The page's event-stream parser, fed one stream cut at every byte
	// (inside multi-byte characters, between \r and \n) and byte by byte,
	// yields the same events.
	t.Run("stream parser across chunks", func(t *testing.T) {
		b.screenshotOnFailure(t)
		var bad []string
		b.eval(t, `(async () => {
			const src = document.querySelector("script[type=module]").src.replace(/app\.js$/, "stream.js");
			const { events } = await import(src);
			const text = 'id: 1\ndata: {"text":"h\u00e9llo \u4f60\u597d"}\n\n: keepalive\n\nid: 2\r\ndata: {"text":"w\u00f6rld \ud83d\ude00"}\r\n\r\n' +
				'event: x\ndata: a\ndata: b\n\nid: 3\rdata: {"done":true}\r\r';
			const bytes = new TextEncoder().encode(text);
			const want = '1 message {"text":"h\u00e9llo \u4f60\u597d"}|2 message {"text":"w\u00f6rld \ud83d\ude00"}|2 x a\nb|3 message {"done":true}';
			const run = async (chunks) => {
				const body = new ReadableStream({ start(c) { for (const ch of chunks) c.enqueue(ch); c.close(); } });
				const got = [];
				for await (const ev of events(body)) got.push(ev.id + " " + ev.event + " " + ev.data);
				return got.join("|");
			};
			const bad = [];
			for (let cut = 1; cut < bytes.length; cut++) {
				const got = await run([bytes.slice(0, cut), bytes.slice(cut)]);
				if (got !== want) bad.push("cut at " + cut + ": " + got);
			}
			const got = await run(Array.from(bytes, (x) => new Uint8Array([x])));
			if (got !== want) bad.push("byte by byte: " + got);
			return bad;
		})()`, &bad)
		for _, s := range bad {
			t.Error(s)
		}
	})

	// markdown.js builds these nodes, and no others, from Markdown.
	t.Run("markdown renderer", func(t *testing.T) {
		b.screenshotOnFailure(t)
		cases := [][2]string{
			{"[a](https://example.com/x?q=1&r=2)", `<p><a href="https://example.com/x?q=1&amp;r=2" rel="noopener noreferrer nofollow" target="_blank">a</a></p>`},
			{"[a](javascript:alert(1))", `<p>a (javascript:alert(1))</p>`},
			{"see https://example.com/a.", `<p>see <a href="https://example.com/a" rel="noopener noreferrer nofollow" target="_blank">https://example.com/a</a>.</p>`},
			{"| a | b |\n|---|---|\n| 1 | `2` |", `<div class="table-wrap"><table><thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr><td>1</td><td><code>2</code></td></tr></tbody></table></div>`},
			{"1. x\n2. y", `<ol><li>x</li><li>y</li></ol>`},
			{"- a\n  - b", `<ul><li><p>a</p><ul><li>b</li></ul></li></ul>`},
			{"# T\n> q *e* snake_case_name", `<h3>T</h3><blockquote><p>q <em>e</em> snake_case_name</p></blockquote>`},
			{"```\nunclosed <b>", `<pre><code>unclosed &lt;b&gt;</code></pre>`},
			{"a\\*b\\* ~~c~~", `<p>a*b* <del>c</del></p>`},
		}
		for _, c := range cases {
			in, _ := json.Marshal(c[0])
			var got string
			b.eval(t, `(async () => {
				const src = document.querySelector("script[type=module]").src.replace(/app\.js$/, "markdown.js");
				const { render } = await import(src);
				const div = document.createElement("div");
				div.append(render(`+string(in)+`));
				return div.innerHTML; })()`, &got)
			if got != c[1] {
				t.Errorf("%q rendered\n%s\nwant\n%s", c[0], got, c[1])
			}
		}
	})

	t.Run("chat streams Markdown", func(t *testing.T) {
		b.screenshotOnFailure(t)
		fake.SetScript(llmtest.Script{Deltas: []string{"Hello, ", "**wor", "ld**", "\n\n```go\nfmt.Println(", "\"hi\")\n```\n", "- one\n- two"},
			Delay: 150 * time.Millisecond})
		b.typeIn(t, "#prompt", "Say hello")
		b.click(t, "#send")
		// Streaming: the answer shows its first words before the end.
		b.waitFor(t, "the first words", `document.querySelector("`+lastAnswer+`.streaming") && document.querySelector("`+lastAnswer+`").innerText.includes("Hello")`, 10*time.Second)
		if b.text(t, "#stop") == "" {
			t.Errorf("no Stop button while the answer streams")
		}
		b.waitFor(t, "the whole answer", answerDone+` && document.querySelector("`+lastAnswer+` li:nth-child(2)")`, 20*time.Second)
		b.waitFor(t, "the conversation listed", `document.querySelectorAll("#conversations li").length === 1`, 10*time.Second)
		var got struct {
			Strong, Code, Lang, Hash string
			Items, Listed            int
		}
		b.eval(t, `({strong: (document.querySelector("`+lastAnswer+` strong")||{}).textContent,
			code: (document.querySelector("`+lastAnswer+` pre code")||{}).textContent,
			lang: (document.querySelector("`+lastAnswer+` pre")||{dataset:{}}).dataset.lang,
			items: document.querySelectorAll("`+lastAnswer+` li").length,
			hash: location.hash,
			listed: document.querySelectorAll("#conversations li").length})`, &got)
		if got.Strong != "world" || got.Code != `fmt.Println("hi")` || got.Lang != "go" || got.Items != 2 {
			t.Errorf("answer rendered as %+v", got)
		}
		if !strings.HasPrefix(got.Hash, "#chat/") || got.Listed != 1 {
			t.Errorf("after the first answer: hash %q, %d conversations listed", got.Hash, got.Listed)
		}
		var stored string
		b.eval(t, `sessionStorage.getItem("ferry.stream")`, &stored)
		if stored != "" {
			t.Errorf("a finished answer is still remembered for resuming: %s", stored)
		}
	})

	t.Run("stop", func(t *testing.T) {
		b.screenshotOnFailure(t)
		fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(200), Delay: 100 * time.Millisecond})
		before := len(fake.Requests())
		b.typeIn(t, "#prompt", "Count slowly")
		b.click(t, "#send")
		b.waitFor(t, "a few words", `document.querySelector("`+lastAnswer+`").innerText.includes("tok3")`, 10*time.Second)
		b.click(t, "#stop")
		b.waitFor(t, "the stop", answerDone+` && document.querySelector("`+lastAnswer+`").innerText.includes("Stopped.")`, 10*time.Second)
		reqs := fake.Requests()
		if len(reqs) != before+1 {
			t.Fatalf("the fake saw %d requests, want 1", len(reqs)-before)
		}
		select {
		case <-reqs[len(reqs)-1].Done():
		case <-time.After(5 * time.Second):
			t.Fatal("the upstream call goes on 5 s after Stop")
		}
		if !reqs[len(reqs)-1].Cancelled() {
			t.Error("Stop did not cancel the upstream call")
		}
		if txt := b.text(t, lastAnswer); strings.Contains(txt, "tok199") {
			t.Errorf("the answer ran to its end after Stop: %s", txt)
		}
	})

	t.Run("regenerate", func(t *testing.T) {
		b.screenshotOnFailure(t)
		fake.SetScript(llmtest.Script{Deltas: []string{"A fresh ", "answer."}, Delay: 20 * time.Millisecond})
		b.click(t, "#regenerate")
		b.waitFor(t, "the new answer", answerDone+` && document.querySelector("`+lastAnswer+`").innerText.includes("A fresh answer.")`, 10*time.Second)
		var got struct{ Answers, Stopped int }
		b.eval(t, `(() => { const users = document.querySelectorAll("#messages .msg.user"); const last = users[users.length-1];
			let answers = 0, stopped = 0;
			for (let e = last.nextElementSibling; e; e = e.nextElementSibling) { answers++; if (e.innerText.includes("Stopped.")) stopped++; }
			return {answers, stopped}; })()`, &got)
		if got.Answers != 1 || got.Stopped != 0 {
			t.Errorf("after Regenerate the last question has %d answers (%d stopped), want the new one only", got.Answers, got.Stopped)
		}
		var prompt struct {
			Messages []struct {
				Role    string          `json:"role"`
				Content json.RawMessage `json:"content"`
			} `json:"messages"`
		}
		if err := fake.Last().JSON(&prompt); err != nil || len(prompt.Messages) == 0 ||
			!strings.Contains(string(prompt.Messages[len(prompt.Messages)-1].Content), "Count slowly") {
			t.Errorf("Regenerate asked %s, want the last question again", fake.Last().Body)
		}
	})

	t.Run("reload resumes", func(t *testing.T) {
		b.screenshotOnFailure(t)
		const n = 60
		fake.SetScript(llmtest.Script{Deltas: llmtest.Deltas(n), Delay: 60 * time.Millisecond})
		b.click(t, "#new-chat")
		b.typeIn(t, "#prompt", "A long answer, please")
		b.click(t, "#send")
		b.waitFor(t, "a few words", `document.querySelector("`+lastAnswer+`").innerText.includes("tok5")`, 10*time.Second)
		var saved struct {
			ConversationID string `json:"conversation_id"`
			LastID         string `json:"last_id"`
		}
		var raw string
		b.eval(t, `sessionStorage.getItem("ferry.stream") || ""`, &raw)
		if err := json.Unmarshal([]byte(raw), &saved); err != nil || saved.ConversationID == "" || saved.LastID == "" {
			t.Fatalf("the page does not remember the stream: %q", raw)
		}
		if status := resumeStatus(t, base, access(t), saved.ConversationID); status == http.StatusNotFound || status == http.StatusMethodNotAllowed {
			// The only reason to skip: the server has no resumable streams.
			b.do(chromedp.Navigate(base + "/"))
			b.waitFor(t, "the end of the answer", `!document.querySelector(".streaming")`, 20*time.Second)
			t.Skipf("GET /conversations/{id}/stream answers %d: this server cannot resume a stream", status)
		}
		// Model calls: the page also lists the models again after the reload.
		calls := func() (n int) {
			for _, r := range fake.Requests() {
				if r.Method == "POST" {
					n++
				}
			}
			return n
		}
		requests := calls()
		if err := b.do(chromedp.Reload()); err != nil {
			t.Fatal(err)
		}
		want := strings.Join(llmtest.Deltas(n), "")
		b.waitFor(t, "the resumed answer to end", answerDone+` && document.querySelector("`+lastAnswer+`").innerText.includes("tok`+fmt.Sprint(n-1)+`")`, 30*time.Second)
		got := b.text(t, lastAnswer+" .body")
		if strings.Join(strings.Fields(got), " ") != strings.TrimSpace(want) {
			t.Errorf("after the reload the answer reads\n%q\nwant\n%q", got, want)
		}
		if calls() != requests {
			t.Errorf("the reload asked the model again (%d calls)", calls()-requests)
		}
		var hash string
		b.eval(t, `location.hash`, &hash)
		if hash != "#chat/"+saved.ConversationID {
			t.Errorf("after the reload the page shows %q, want the conversation %s", hash, saved.ConversationID)
		}
	})

	t.Run("hostile answer", func(t *testing.T) {
		b.screenshotOnFailure(t)
		hostile := "<img src=x onerror=\"window.__pwned='img'\">\n\n<script>window.__pwned='script'</script>\n\n" +
			"[click me](javascript:window.__pwned='link') and <a href=\"javascript:window.__pwned='a'\">a</a>\n\n" +
			"<iframe src=\"javascript:window.__pwned='iframe'\"></iframe> <b>not bold</b> **bold**\n\n" +
			"```html\n<svg onload=\"window.__pwned='svg'\"></svg>\n```\n\n![x](javascript:window.__pwned='image')"
		// Cut in the middle of tags, as a stream delivers them.
		var deltas []string
		for i := 0; i < len(hostile); i += 7 {
			deltas = append(deltas, hostile[i:min(i+7, len(hostile))])
		}
		fake.SetScript(llmtest.Script{Deltas: deltas, Delay: 5 * time.Millisecond})
		b.click(t, "#new-chat")
		b.typeIn(t, "#prompt", "Be nasty")
		b.click(t, "#send")
		b.waitFor(t, "the hostile answer", answerDone+` && document.querySelector("`+lastAnswer+`").innerText.includes("![x]") === false && document.querySelector("`+lastAnswer+` pre")`, 15*time.Second)
		var got struct {
			Pwned    any    `json:"pwned"`
			Elements int    `json:"elements"`
			Links    int    `json:"links"`
			Text     string `json:"text"`
			Code     string `json:"code"`
			Strong   string `json:"strong"`
		}
		b.eval(t, `({pwned: window.__pwned === undefined ? null : window.__pwned,
			elements: document.querySelectorAll("#messages img, #messages script, #messages iframe, #messages svg, #messages b").length,
			links: document.querySelectorAll("#messages a[href]").length,
			text: document.querySelector("`+lastAnswer+` .body").innerText,
			code: document.querySelector("`+lastAnswer+` pre code").textContent,
			strong: (document.querySelector("`+lastAnswer+` strong") || {}).textContent})`, &got)
		if got.Pwned != nil || got.Elements != 0 || got.Links != 0 {
			t.Errorf("model output became markup: pwned %v, %d elements, %d links", got.Pwned, got.Elements, got.Links)
		}
		for _, s := range []string{`<img src=x onerror="window.__pwned='img'">`, "<script>window.__pwned='script'</script>", "<b>not bold</b>"} {
			if !strings.Contains(got.Text, s) {
				t.Errorf("the answer does not show %q as text:\n%s", s, got.Text)
			}
		}
		if got.Code != `<svg onload="window.__pwned='svg'"></svg>` || got.Strong != "bold" {
			t.Errorf("code %q, strong %q", got.Code, got.Strong)
		}

		// Were the renderer to fail, the page's policy still refuses
		// markup as a string and inline script.
		var refused []string
		b.eval(t, `(() => {
			const refused = [];
			const tries = {
				innerHTML: () => { document.querySelector("#messages").innerHTML = "<img src=x onerror=\"window.__pwned='innerHTML'\">"; },
				insertAdjacentHTML: () => document.body.insertAdjacentHTML("beforeend", "<img src=x onerror=\"window.__pwned='adjacent'\">"),
				inlineScript: () => { const s = document.createElement("script"); s.textContent = "window.__pwned='inline'"; document.body.append(s); },
			};
			for (const [name, f] of Object.entries(tries)) { try { f(); } catch (e) { refused.push(name); } }
			return refused; })()`, &refused)
		time.Sleep(200 * time.Millisecond) // an onerror would have run by now
		b.eval(t, `window.__pwned === undefined ? null : window.__pwned`, &got.Pwned)
		if got.Pwned != nil {
			t.Errorf("the page ran injected script: %v", got.Pwned)
		}
		if strings.Join(refused, " ") != "innerHTML insertAdjacentHTML inlineScript" {
			t.Errorf("the policy refused only %v", refused)
		}
		var violations []string
		b.eval(t, `window.__cspViolations`, &violations)
		if len(violations) == 0 {
			t.Errorf("no Content-Security-Policy violation was reported")
		}
		b.eval(t, `window.__cspViolations = []`, &violations)
	})

	t.Run("PDF", func(t *testing.T) {
		b.screenshotOnFailure(t)
		fake.SetScript(llmtest.Script{Deltas: []string{"This PDF has ", "four pages."}, Delay: 10 * time.Millisecond})
		b.click(t, `#nav a[href="#pdf"]`)
		pdf := sharedFile(t, fourPagesPDF)
		if err := b.do(chromedp.SetUploadFiles("#pdf-file", []string{pdf})); err != nil {
			t.Fatal(err)
		}
		b.typeIn(t, "#pdf-question", "How many pages?")
		b.click(t, "#pdf-ask")
		b.waitFor(t, "the answer about the PDF", `document.getElementById("pdf-answer").innerText.includes("four pages.") && document.querySelector("#pdf-answer .more a")`,
			// PDFium starts with the first PDF: seconds, more on a busy machine.
			120*time.Second)
		last := fake.Last()
		if !bytes.Contains(last.Body, []byte("How many pages?")) {
			t.Errorf("the model was not asked the question: %.300s", last.Body)
		}
		data, _ := os.ReadFile(pdf)
		if docs := last.Documents(); len(docs) != 1 || !bytes.Equal(docs[0].Data, data) {
			t.Errorf("the model got %d documents, want the PDF", len(docs))
		}
	})

	t.Run("collection cites a page", func(t *testing.T) {
		b.screenshotOnFailure(t)
		b.click(t, `#nav a[href="#collections"]`)
		b.waitFor(t, "the collections", `document.querySelector("#collection option")`, 10*time.Second)
		b.typeIn(t, "#collection-name", "papers")
		b.click(t, `#collection-form button`)
		b.waitFor(t, "the new collection", `document.getElementById("collection").value === "papers"`, 10*time.Second)
		pdf := sharedFile(t, fourPagesPDF)
		if err := b.do(chromedp.SetUploadFiles("#upload-file", []string{pdf})); err != nil {
			t.Fatal(err)
		}
		b.click(t, "#upload")
		b.waitFor(t, "the upload to finish", `document.getElementById("upload-progress").value === 1 && !document.getElementById("upload").disabled`, 30*time.Second)
		b.waitFor(t, "the PDF to be indexed", `document.querySelector("#documents tr[data-status=indexed]")`, 60*time.Second)
		if row := b.text(t, "#documents tr"); !strings.Contains(row, "indexed") || !strings.Contains(row, "4") {
			t.Errorf("document row: %q", row)
		}

		// The page the search puts first is the page the citation shows.
		const question = "Which letters of the alphabet should the text contain?"
		var hits struct {
			Items []struct {
				Page int `json:"page"`
			} `json:"results"`
		}
		g.call(t, "/collections/papers/search", access(t), map[string]any{"query": question}, http.StatusOK, &hits)
		if len(hits.Items) == 0 {
			t.Fatalf("the collection has nothing for %q", question)
		}
		fake.SetScript(llmtest.Script{Deltas: []string{"It is ", "proved there [1]."}, Delay: 10 * time.Millisecond})
		b.typeIn(t, "#rag-question", question)
		b.click(t, "#rag-ask")
		b.waitFor(t, "the cited source", `document.getElementById("rag-answer").innerText.includes("proved there [1].") && document.querySelector("#sources li.cited")`, 30*time.Second)
		cited := b.text(t, "#sources li.cited")
		if !regexp.MustCompile(`\bpages? ` + fmt.Sprint(hits.Items[0].Page) + `\b`).MatchString(cited) {
			t.Errorf("the cited source reads %q, want page %d", cited, hits.Items[0].Page)
		}
		if n := b.text(t, "#sources"); strings.Count(n, "page") < 1 {
			t.Errorf("sources: %q", n)
		}
	})

	t.Run("API keys", func(t *testing.T) {
		b.screenshotOnFailure(t)
		b.click(t, `#nav a[href="#keys"]`)
		b.typeIn(t, "#key-name", "from the page")
		b.click(t, "#key-form button")
		b.waitFor(t, "the new key", `!document.getElementById("new-key").hidden && document.querySelectorAll("#key-list tr").length === 1`, 10*time.Second)
		key := b.text(t, "#new-key-value")
		if !strings.HasPrefix(key, "fk_") {
			t.Fatalf("new key %q", key)
		}
		// The key works.
		resp := g.send(t, "GET", "/users/me", key)
		if resp.StatusCode != 200 {
			t.Errorf("the new key: GET /users/me %d", resp.StatusCode)
		}
		b.click(t, "#key-list button")
		b.waitFor(t, "the key revoked", `document.querySelectorAll("#key-list tr").length === 0`, 10*time.Second)
		if resp := g.send(t, "GET", "/users/me", key); resp.StatusCode != 401 {
			t.Errorf("the revoked key: GET /users/me %d", resp.StatusCode)
		}
	})

	t.Run("refresh", func(t *testing.T) {
		b.screenshotOnFailure(t)
		// An access token the server refuses: the page refreshes it and
		// goes on, signed in.
		var old string
		b.eval(t, `(() => { const t = JSON.parse(localStorage.getItem("ferry.tokens")); const old = t.access;
			t.access = "invalid"; localStorage.setItem("ferry.tokens", JSON.stringify(t)); return old; })()`, &old)
		if err := b.do(chromedp.Reload()); err != nil {
			t.Fatal(err)
		}
		b.waitFor(t, "the page signed in again", `document.getElementById("who").textContent === "`+email+`"`, 10*time.Second)
		if tok := access(t); tok == "invalid" || tok == "" || tok == old {
			t.Errorf("the access token was not refreshed: %q", tok)
		}
	})

	var violations []string
	b.eval(t, `window.__cspViolations`, &violations)
	for _, v := range violations {
		t.Errorf("Content-Security-Policy violation: %s", v)
	}
	b.checkClean(t)
	_ = password
}

// resumeStatus is the status of GET /conversations/{id}/stream from the
// first event (no Last-Event-ID), whose body it does not wait for.
func resumeStatus(t *testing.T, base, token, id string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/conversations/"+id+"/stream", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
