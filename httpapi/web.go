package httpapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/web"
)

// webCSP is the web page's Content-Security-Policy. Scripts, styles and
// connections reach this origin only and no inline script runs, so
// nothing a model writes can run even if it reached the DOM as HTML; and
// with Trusted Types required, no string can be assigned to innerHTML or
// another HTML sink at all (the page builds its nodes, markdown.js).
var webCSP = strings.Join([]string{
	"default-src 'none'",
	"script-src 'self'",
	"style-src 'self'",
	"img-src 'self' data:",
	"connect-src 'self'",
	"base-uri 'none'",
	"form-action 'none'",
	"frame-ancestors 'none'",
	"require-trusted-types-for 'script'",
	"trusted-types 'none'",
}, "; ")

// webFiles is the web page's files, read once: the assets by name, the
// version that names them all (a hash of every file, so the modules'
// relative imports stay within one version), and the page with that
// version in its links.
type webFiles struct {
	assets  map[string]*docsAsset
	version string
	page    []byte
	etag    string
}

var webBuild = sync.OnceValue(func() *webFiles {
	entries, err := fs.ReadDir(web.Files, ".")
	if err != nil {
		panic(err) // the embedded directory is part of the binary
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	slices.Sort(names)
	all := sha256.New()
	f := &webFiles{assets: map[string]*docsAsset{}}
	var page []byte
	for _, name := range names {
		body, err := fs.ReadFile(web.Files, name)
		if err != nil {
			panic(err)
		}
		all.Write([]byte(name))
		all.Write(body)
		if name == web.Page {
			page = body
			continue
		}
		sum := sha256.Sum256(body)
		f.assets[name] = &docsAsset{body: body, contentType: docsContentType(name), hash: hex.EncodeToString(sum[:8])}
	}
	f.version = hex.EncodeToString(all.Sum(nil)[:8])
	f.page = bytes.ReplaceAll(page, []byte("/web/"+web.VersionMarker+"/"), []byte("/web/"+f.version+"/"))
	sum := sha256.Sum256(f.page)
	f.etag = `"` + hex.EncodeToString(sum[:8]) + `"`
	return f
})

// serveWeb answers GET /: the web page, whose files come from this server
// (serveWebAsset) under a policy that lets it reach this origin only.
func serveWeb(w http.ResponseWriter, r *http.Request) {
	f := webBuild()
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", webCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	// The page names its assets by version; a browser must check it again
	// to learn of a new one.
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.page))
}

// serveWebAsset answers GET /web/{version}/{name}: a file of the web page,
// gzipped when the client accepts it. Under the current version it may be
// cached for a year; under any other (a page loaded before an upgrade) it
// is served, the current content, but must be revalidated by its ETag.
func serveWebAsset(w http.ResponseWriter, r *http.Request) {
	f := webBuild()
	a, ok := f.assets[r.PathValue("name")]
	if !ok {
		writeError(w, problemShape{}, ferry.Errorf(ferry.NotFound, "no route for %s", r.URL.Path))
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	if r.PathValue("version") == f.version {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	body, etag := a.body, `"`+a.hash+`"`
	if gz := a.gzip(); gz != nil {
		h.Add("Vary", "Accept-Encoding")
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			body, etag = gz, `"`+a.hash+`-gzip"`
			h.Set("Content-Encoding", "gzip")
		}
	}
	h.Set("ETag", etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}
