package httpapi_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"regexp"
	"strings"
	"testing"
)

// attrURL finds the URLs a page loads: src and href attributes.
var attrURL = regexp.MustCompile(`\s(?:src|href)\s*=\s*"([^"]*)"`)

// The docs page loads nothing from another host, under a policy that
// allows nothing from another host, so it works without internet.
func TestDocsPageIsSelfContained(t *testing.T) {
	h := newHarness(t, "sqlite", options{})
	res := h.do(t, request{method: "GET", path: "/docs"})
	if res.status != 200 || !strings.HasPrefix(res.header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /docs: %d %s\n%s", res.status, res.header.Get("Content-Type"), res.body)
	}

	csp := res.header.Get("Content-Security-Policy")
	directives := map[string][]string{}
	for d := range strings.SplitSeq(csp, ";") {
		f := strings.Fields(d)
		if len(f) > 0 {
			directives[f[0]] = f[1:]
		}
	}
	for name, sources := range directives {
		for _, src := range sources {
			switch {
			case src == "'self'" || src == "'none'":
			case src == "data:" && name == "img-src": // Swagger UI's icons
			default:
				t.Errorf("CSP %s allows %s: %s", name, src, csp)
			}
		}
	}
	for _, name := range []string{"default-src", "script-src", "style-src", "connect-src"} {
		if directives[name] == nil {
			t.Errorf("CSP has no %s: %s", name, csp)
		}
	}
	if got := strings.Join(directives["default-src"], " "); got != "'none'" {
		t.Errorf("default-src = %q, want 'none'", got)
	}

	// No inline script or style: the policy would block it, and it must
	// not need to allow it.
	if m := regexp.MustCompile(`<script[^>]*>[^<]*\S[^<]*</script>|<style|\sstyle=|\son[a-z]+=`).FindString(res.body); m != "" {
		t.Errorf("page has inline code %q", m)
	}
	for _, m := range regexp.MustCompile(`<script[^>]*>`).FindAllString(res.body, -1) {
		if !strings.Contains(m, " src=") {
			t.Errorf("inline script %s", m)
		}
	}

	urls := attrURL.FindAllStringSubmatch(res.body, -1)
	if len(urls) < 3 {
		t.Fatalf("page links %d files, want the bundle, the stylesheet and init.js:\n%s", len(urls), res.body)
	}
	for _, u := range urls {
		link := u[1]
		if !strings.HasPrefix(link, "/") || strings.HasPrefix(link, "//") {
			t.Errorf("page loads %q, not a path on this server", link)
			continue
		}
		a := h.do(t, request{method: "GET", path: link})
		if a.status != 200 || a.body == "" {
			t.Errorf("GET %s: %d", link, a.status)
		}
	}
	for _, want := range []string{"swagger-ui-bundle.js?v=", "swagger-ui.css?v=", "init.js?v="} {
		if !strings.Contains(res.body, want) {
			t.Errorf("page does not link %s", want)
		}
	}

	// The document the page renders is there, with the operations.
	m := regexp.MustCompile(`data-url="([^"]+)"`).FindStringSubmatch(res.body)
	if m == nil {
		t.Fatalf("page names no OpenAPI document:\n%s", res.body)
	}
	doc := h.do(t, request{method: "GET", path: m[1]})
	var spec struct {
		Paths map[string]any `json:"paths"`
	}
	if doc.status != 200 || json.Unmarshal([]byte(doc.body), &spec) != nil || spec.Paths["/ai/chat/stream"] == nil {
		t.Fatalf("GET %s: %d, no /ai/chat/stream in %.200s", m[1], doc.status, doc.body)
	}
	// huma's own docs route is off: /docs is not an operation of it.
	if spec.Paths["/docs"] != nil {
		t.Errorf("/docs is in the OpenAPI document")
	}
}

// The docs assets are cached for good under the URL the page links to,
// revalidated by ETag under any other, and gzipped for clients that
// accept it.
func TestDocsAssetCaching(t *testing.T) {
	h := newHarness(t, "sqlite", options{})
	page := h.do(t, request{method: "GET", path: "/docs"})
	if page.header.Get("Cache-Control") != "no-cache" {
		t.Errorf("page Cache-Control = %q, want no-cache", page.header.Get("Cache-Control"))
	}
	link := regexp.MustCompile(`src="(/docs/assets/swagger-ui-bundle\.js\?v=[0-9a-f]+)"`).FindStringSubmatch(page.body)
	if link == nil {
		t.Fatalf("page does not link the bundle:\n%s", page.body)
	}
	plain := h.do(t, request{method: "GET", path: link[1]})
	if plain.status != 200 || !strings.HasPrefix(plain.header.Get("Content-Type"), "text/javascript") ||
		!strings.Contains(plain.body, "SwaggerUIBundle") {
		t.Fatalf("GET %s: %d %s", link[1], plain.status, plain.header.Get("Content-Type"))
	}
	for k, want := range map[string]string{
		"Cache-Control":          "public, max-age=31536000, immutable",
		"X-Content-Type-Options": "nosniff",
		"Content-Encoding":       "",
	} {
		if got := plain.header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	etag := plain.header.Get("ETag")
	if etag == "" {
		t.Fatal("no ETag")
	}
	if res := h.do(t, request{method: "GET", path: link[1], header: map[string]string{"If-None-Match": etag}}); res.status != 304 {
		t.Errorf("If-None-Match: %d, want 304", res.status)
	}

	// An old link's content may have changed: revalidate.
	stale := h.do(t, request{method: "GET", path: "/docs/assets/swagger-ui-bundle.js?v=0000"})
	if stale.status != 200 || stale.header.Get("Cache-Control") != "no-cache" {
		t.Errorf("stale link: %d, Cache-Control %q, want 200 no-cache", stale.status, stale.header.Get("Cache-Control"))
	}

	gz := h.do(t, request{method: "GET", path: link[1], header: map[string]string{"Accept-Encoding": "br, gzip"}})
	if gz.header.Get("Content-Encoding") != "gzip" || gz.header.Get("ETag") == etag {
		t.Fatalf("gzip: Content-Encoding %q, ETag %q (plain %q)", gz.header.Get("Content-Encoding"), gz.header.Get("ETag"), etag)
	}
	zr, err := gzip.NewReader(strings.NewReader(gz.body))
	if err != nil {
		t.Fatal(err)
	}
	unzipped, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(unzipped, []byte(plain.body)) || len(gz.body) > len(plain.body)/2 {
		t.Errorf("gzipped body: %v, %d bytes unzipped to %d, want %d", err, len(gz.body), len(unzipped), len(plain.body))
	}
	if res := h.do(t, request{method: "GET", path: link[1], header: map[string]string{"Accept-Encoding": "gzip;q=0"}}); res.header.Get("Content-Encoding") != "" {
		t.Errorf("gzip;q=0 got Content-Encoding %q", res.header.Get("Content-Encoding"))
	}

	h.run(t, []scenario{
		{name: "licence", request: request{method: "GET", path: "/docs/assets/LICENSE"}, status: 200, contains: []string{"Apache License"}},
		{name: "unknown asset", request: request{method: "GET", path: "/docs/assets/index.html"}, status: 404, problem: true},
		{name: "no listing", request: request{method: "GET", path: "/docs/assets/"}, status: 404, problem: true},
		{name: "root is the web page", request: request{method: "GET", path: "/"}, status: 200,
			contains: []string{"<html", "/web/"}},
	})
}
