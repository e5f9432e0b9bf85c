package httpapi_test

import (
	"regexp"
	"strings"
	"testing"
)

// webPageBudget is the most the web page may load, before compression
// (issue 11's target).
const webPageBudget = 200 << 10

// The web page at / loads only files of this server, all within the
// budget, under a policy that runs no inline script, allows nothing from
// another host and requires Trusted Types, so that no HTML string reaches
// the DOM.
func TestWebPageIsSelfContained(t *testing.T) {
	h := newHarness(t, "sqlite", options{})
	res := h.do(t, request{method: "GET", path: "/"})
	if res.status != 200 || !strings.HasPrefix(res.header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s\n%s", res.status, res.header.Get("Content-Type"), res.body)
	}
	csp := res.header.Get("Content-Security-Policy")
	directives := map[string]string{}
	for d := range strings.SplitSeq(csp, ";") {
		f := strings.Fields(d)
		if len(f) > 0 {
			directives[f[0]] = strings.Join(f[1:], " ")
		}
	}
	for name, want := range map[string]string{
		"default-src": "'none'", "script-src": "'self'", "style-src": "'self'", "connect-src": "'self'",
		"img-src": "'self' data:", "base-uri": "'none'", "frame-ancestors": "'none'",
		"require-trusted-types-for": "'script'", "trusted-types": "'none'",
	} {
		if got, ok := directives[name]; !ok || got != want {
			t.Errorf("CSP %s = %q, want %q (policy: %s)", name, got, want, csp)
		}
	}
	if res.header.Get("X-Content-Type-Options") != "nosniff" || res.header.Get("Cache-Control") != "no-cache" {
		t.Errorf("page headers: %v", res.header)
	}
	if m := regexp.MustCompile(`<script[^>]*>[^<]*\S[^<]*</script>|<style|\sstyle=|\son[a-z]+=`).FindString(res.body); m != "" {
		t.Errorf("page has inline code %q", m)
	}
	if strings.Contains(res.body, "/web/@v/") {
		t.Errorf("page links still name @v:\n%s", res.body)
	}

	total := len(res.body)
	urls := attrURL.FindAllStringSubmatch(res.body, -1)
	var modules []string
	for _, u := range urls {
		link := u[1]
		switch {
		case link == "data:" || link == "data:,":
			continue
		case link == "/docs" || strings.HasPrefix(link, "#"):
			continue // links to follow, not files the page loads
		case !strings.HasPrefix(link, "/web/"):
			t.Errorf("page loads %q, not a file of the page", link)
			continue
		}
		a := h.do(t, request{method: "GET", path: link})
		if a.status != 200 || a.body == "" {
			t.Errorf("GET %s: %d", link, a.status)
			continue
		}
		if a.header.Get("Cache-Control") != "public, max-age=31536000, immutable" {
			t.Errorf("GET %s: Cache-Control %q", link, a.header.Get("Cache-Control"))
		}
		total += len(a.body)
		if strings.HasSuffix(link, ".js") {
			modules = append(modules, link[strings.LastIndex(link, "/")+1:])
			// Imports stay relative, within the version's directory.
			for _, m := range regexp.MustCompile(`from "([^"]+)"`).FindAllStringSubmatch(a.body, -1) {
				if !strings.HasPrefix(m[1], "./") {
					t.Errorf("%s imports %q, not a file beside it", link, m[1])
				}
			}
			if strings.Contains(a.body, "innerHTML") || strings.Contains(a.body, "insertAdjacentHTML") || strings.Contains(a.body, "document.write") {
				t.Errorf("%s writes HTML strings", link)
			}
		}
	}
	for _, want := range []string{"app.js", "api.js", "stream.js", "markdown.js"} {
		if !strings.Contains(strings.Join(modules, " "), want) {
			t.Errorf("page does not load %s (loads %v)", want, modules)
		}
	}
	if total > webPageBudget {
		t.Errorf("the page loads %d bytes, over the %d budget", total, webPageBudget)
	}
	t.Logf("the page loads %d bytes before compression", total)

	h.run(t, []scenario{
		{name: "unknown file", request: request{method: "GET", path: "/web/x/index.html"}, status: 404, problem: true},
		{name: "old version revalidates", request: request{method: "GET", path: "/web/0000/app.js"}, status: 200,
			headers: map[string]string{"Cache-Control": "no-cache"}},
		{name: "gzipped", request: request{method: "GET", path: "/web/0000/app.js", header: map[string]string{"Accept-Encoding": "gzip"}}, status: 200,
			headers: map[string]string{"Content-Encoding": "gzip"}},
		{name: "no listing", request: request{method: "GET", path: "/web/"}, status: 404, problem: true},
	})
}
