package httpapi

import (
	"net/http"
	"strings"

	"github.com/ferryhq/ferry"
)

// CORS, the Fetch standard's protocol by which a browser lets a page of one
// origin read answers from another, for front ends served from elsewhere
// than Ferry (Options.CORSOrigins, FERRY_CORS_ORIGINS).
//
// Off (no origins), Ferry sends no CORS header: browsers keep other sites'
// pages from reading its answers. On, an allowed origin's preflight gets
// 204 with the methods and the requested headers Ferry accepts, and its
// requests get Access-Control-Allow-Origin and the response headers a
// client may read. A preflight from any other origin gets 403 in the
// problem shape, without CORS headers, so that the browser's network panel
// says why; its other requests are served as usual, without CORS headers,
// so the browser keeps the answer from the page.
//
// Credentials: Ferry authenticates with the Authorization header (a bearer
// token or an API key), never with cookies, so it never sends
// Access-Control-Allow-Credentials. A page sets Authorization itself,
// which the preflight allows by name, and uses fetch's default credentials
// mode; credentials: "include" fails by design. That also makes "*" sound:
// the standard forbids credentials with a wildcard origin, and with "*"
// Ferry answers the literal * (so responses do not vary by origin), while
// it names the allowed request headers one by one, as a wildcard in
// Access-Control-Allow-Headers would not cover Authorization.

// corsPolicy is Options.CORSOrigins, parsed.
type corsPolicy struct {
	any     bool            // "*": every origin, answered with the literal *
	origins map[string]bool // else the origins allowed, as browsers serialise them
}

// newCORSPolicy parses origins, as config normalised them; an empty list
// turns CORS off.
func newCORSPolicy(origins []string) corsPolicy {
	var p corsPolicy
	for _, o := range origins {
		if o == "*" {
			p.any = true
			continue
		}
		if p.origins == nil {
			p.origins = map[string]bool{}
		}
		p.origins[canonicalOrigin(o)] = true
	}
	return p
}

// canonicalOrigin spells a configured origin as a browser's Origin header
// does: lower case, without the scheme's default port.
func canonicalOrigin(o string) string {
	o = strings.ToLower(o)
	switch {
	case strings.HasPrefix(o, "https://"):
		return strings.TrimSuffix(o, ":443")
	case strings.HasPrefix(o, "http://"):
		return strings.TrimSuffix(o, ":80")
	}
	return o
}

func (p corsPolicy) on() bool { return p.any || len(p.origins) > 0 }

func (p corsPolicy) allows(origin string) bool { return p.any || p.origins[origin] }

const (
	// corsMethods are the methods Ferry's routes use.
	corsMethods = "GET, HEAD, POST, PUT, PATCH, DELETE"
	// corsExposed are the response headers, beyond those the standard
	// always lets a page read, that clients need: the request id to quote,
	// the wait after a 429 or 503, and the challenge of a 401.
	corsExposed = "X-Request-ID, Retry-After, WWW-Authenticate"
	// corsMaxAge is how long, in seconds, a browser may reuse a preflight:
	// Chromium's cap.
	corsMaxAge = "7200"
)

// corsRequestHeaders are the request headers a preflight may ask for:
// what Ferry reads (Authorization, X-Request-ID), what the Fetch standard
// safelists only for some values (Content-Type: application/json is not
// among them), what streaming clients send, and what the official SDKs
// that Ferry's compatible endpoints serve send from a browser, besides
// corsRequestHeaderPrefix.
var corsRequestHeaders = map[string]bool{
	"authorization": true, "content-type": true, "x-request-id": true,
	"accept": true, "accept-language": true, "content-language": true,
	"cache-control": true, "last-event-id": true, "user-agent": true,
	"x-api-key": true, "anthropic-version": true, "anthropic-beta": true,
	"anthropic-dangerous-direct-browser-access": true, "openai-organization": true, "openai-project": true,
}

// corsRequestHeaderPrefix starts the names of the headers OpenAI's and
// Anthropic's SDKs describe themselves with (x-stainless-os, …).
const corsRequestHeaderPrefix = "x-stainless-"

// applyCORS applies the CORS policy to a request before it is routed. It
// reports whether it answered the request itself, as it does a preflight;
// else it has set the headers the answer carries.
func (s *server) applyCORS(w http.ResponseWriter, r *http.Request) bool {
	preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
	if !s.cors.on() && !preflight {
		return false // the common case: nothing to do
	}
	origin := r.Header.Get("Origin")
	preflight = preflight && origin != ""
	h := w.Header()
	if s.cors.on() {
		// Whether (and, for a listed origin, what) Access-Control-Allow-Origin
		// is sent depends on Origin: caches must not mix answers up.
		h.Add("Vary", "Origin")
		if preflight {
			h.Add("Vary", "Access-Control-Request-Method, Access-Control-Request-Headers")
		}
	}
	if origin == "" {
		return false
	}
	if !s.cors.allows(origin) {
		if !preflight {
			return false
		}
		msg := "cross-origin requests are off; set FERRY_CORS_ORIGINS to allow an origin"
		if s.cors.on() {
			msg = "origin " + origin + " is not in FERRY_CORS_ORIGINS"
		}
		writeError(w, problemShape{}, ferry.Errorf(ferry.Forbidden, "%s", msg))
		return true
	}
	if s.cors.any {
		h.Set("Access-Control-Allow-Origin", "*")
	} else {
		h.Set("Access-Control-Allow-Origin", origin)
	}
	if !preflight {
		h.Set("Access-Control-Expose-Headers", corsExposed)
		return false
	}
	h.Set("Access-Control-Allow-Methods", corsMethods)
	if allowed := corsAllowHeaders(r.Header.Values("Access-Control-Request-Headers")); allowed != "" {
		h.Set("Access-Control-Allow-Headers", allowed)
	}
	h.Set("Access-Control-Max-Age", corsMaxAge)
	w.WriteHeader(http.StatusNoContent)
	return true
}

// corsAllowHeaders returns the headers of a preflight's
// Access-Control-Request-Headers that Ferry accepts, by name: a browser
// then refuses to send a request with any other.
func corsAllowHeaders(requested []string) string {
	var allowed []string
	for _, v := range requested {
		for name := range strings.SplitSeq(v, ",") {
			name = strings.ToLower(strings.TrimSpace(name))
			if corsRequestHeaders[name] || (strings.HasPrefix(name, corsRequestHeaderPrefix) && validHeaderName(name)) {
				allowed = append(allowed, name)
			}
		}
	}
	return strings.Join(allowed, ", ")
}

// validHeaderName reports whether name is an HTTP token, as a header name
// must be, so that no echoed name can break the response header.
func validHeaderName(name string) bool {
	for _, c := range []byte(name) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return name != ""
}
