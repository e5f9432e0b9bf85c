package httpapi

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ferryhq/ferry"
)

// swaggerUIVersion is the release of the npm package swagger-ui-dist whose
// files docs/ holds; docs/README.md says how to update them.
const swaggerUIVersion = "5.35.0"

// openAPIURL is where huma serves the OpenAPI document (its default
// OpenAPIPath, as JSON), which the docs page renders.
const openAPIURL = "/openapi.json"

// docsFiles are the files the docs page loads, served from the binary so
// that /docs works without internet.
//
//go:embed docs/init.js docs/swagger-ui-bundle.js docs/swagger-ui.css docs/favicon-32x32.png
//go:embed docs/LICENSE docs/NOTICE docs/swagger-ui-bundle.js.LICENSE.txt
var docsFiles embed.FS

// docsCSP is the docs page's Content-Security-Policy: scripts, styles and
// connections (the OpenAPI document, "Try it out", the sign-in of
// "Authorize") reach this origin only, and no inline script runs. Images
// may also be data: URLs, which Swagger UI's stylesheet uses for its icons.
var docsCSP = strings.Join([]string{
	"default-src 'none'",
	"script-src 'self'",
	"style-src 'self'",
	"img-src 'self' data:",
	"connect-src 'self'",
	"base-uri 'none'",
	"form-action 'none'",
	"frame-ancestors 'none'",
}, "; ")

// docsAsset is one embedded file of the docs page.
type docsAsset struct {
	body        []byte
	contentType string
	// hash names this content: the asset's ETag, and the ?v= of the
	// page's link to it.
	hash string

	gzipOnce sync.Once
	gzipped  []byte // nil for a type not worth compressing
}

// gzip returns the asset compressed, computed on first use (the bundle
// shrinks from 1.7 MB to about a third), or nil when its type is not text.
func (a *docsAsset) gzip() []byte {
	a.gzipOnce.Do(func() {
		if !strings.HasPrefix(a.contentType, "text/") {
			return
		}
		var b bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
		zw.Write(a.body)
		zw.Close()
		a.gzipped = b.Bytes()
	})
	return a.gzipped
}

// docsAssets returns the embedded files by name, read once.
var docsAssets = sync.OnceValue(func() map[string]*docsAsset {
	entries, err := docsFiles.ReadDir("docs")
	if err != nil {
		panic(err) // the embedded directory is part of the binary
	}
	assets := make(map[string]*docsAsset, len(entries))
	for _, e := range entries {
		body, err := docsFiles.ReadFile("docs/" + e.Name())
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(body)
		assets[e.Name()] = &docsAsset{body: body, contentType: docsContentType(e.Name()), hash: hex.EncodeToString(sum[:8])}
	}
	return assets
})

// docsContentType is the media type of an embedded file, by its name.
func docsContentType(name string) string {
	switch path.Ext(name) {
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".png":
		return "image/png"
	}
	return "text/plain; charset=utf-8" // the licence texts
}

// docsAssetURL is the page's link to an embedded file: the content's hash
// in the query makes the URL name that very content, so a browser may keep
// it for good and still fetches the new one after an upgrade.
func docsAssetURL(name string) string {
	return "/docs/assets/" + name + "?v=" + docsAssets()[name].hash
}

// docsPage is the HTML of /docs, built once. Swagger UI renders the
// OpenAPI document; init.js starts it.
var docsPage = sync.OnceValue(func() []byte {
	return []byte(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="referrer" content="no-referrer">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="swagger-ui-dist ` + swaggerUIVersion + `">
<title>Ferry API reference</title>
<link rel="icon" type="image/png" href="` + docsAssetURL("favicon-32x32.png") + `">
<link rel="stylesheet" href="` + docsAssetURL("swagger-ui.css") + `">
</head>
<body>
<div id="swagger-ui"></div>
<script src="` + docsAssetURL("swagger-ui-bundle.js") + `"></script>
<script src="` + docsAssetURL("init.js") + `" data-url="` + openAPIURL + `"></script>
</body>
</html>
`)
})

// serveDocs answers GET /docs: the interactive API reference, whose every
// file comes from this server (serveDocsAsset), under a policy that lets
// it reach this origin only.
func serveDocs(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", docsCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	// The page names its assets by hash; a browser must check it again to
	// learn of new ones.
	h.Set("Cache-Control", "no-cache")
	page := docsPage()
	sum := sha256.Sum256(page)
	h.Set("ETag", `"`+hex.EncodeToString(sum[:8])+`"`)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(page))
}

// serveDocsAsset answers GET /docs/assets/{name}: an embedded file of the
// docs page, gzipped when the client accepts it. Asked for by the URL the
// page links to (the current hash in ?v=), it may be cached for a year;
// otherwise it must be revalidated, by its ETag.
func serveDocsAsset(w http.ResponseWriter, r *http.Request) {
	a, ok := docsAssets()[r.PathValue("name")]
	if !ok {
		writeError(w, problemShape{}, ferry.Errorf(ferry.NotFound, "no route for %s", r.URL.Path))
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	if r.URL.Query().Get("v") == a.hash {
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

// acceptsGzip reports whether an Accept-Encoding header value accepts
// gzip: it names gzip with a nonzero weight.
func acceptsGzip(header string) bool {
	for part := range strings.SplitSeq(header, ",") {
		name, params, _ := strings.Cut(part, ";")
		if !strings.EqualFold(strings.TrimSpace(name), "gzip") {
			continue
		}
		if _, q, ok := strings.Cut(params, "q="); ok {
			if w, err := strconv.ParseFloat(strings.TrimSpace(q), 64); err == nil && w == 0 {
				return false
			}
		}
		return true
	}
	return false
}
