// Package web is Ferry's web page: one HTML file, a few ES modules and one
// stylesheet, written to run as they are (no build step, no CDN), and
// embedded in the binary so that `go run ./cmd/ferry` serves them with
// nothing but Go. httpapi serves them under a strict
// Content-Security-Policy.
package web

import "embed"

// Files are the page's files at the root of the FS: index.html, which
// names the others by the path /web/@v/NAME (httpapi replaces @v with the
// version of the files it serves), the modules app.js imports and
// style.css.
//
//go:embed index.html style.css *.js
var Files embed.FS

// Page is the name of the HTML file in Files.
const Page = "index.html"

// VersionMarker is what index.html writes where the assets' version goes
// in their path.
const VersionMarker = "@v"
