package httpapi

import (
	"net/http"

	"github.com/ferryhq/ferry/chat"
)

// cacheHeader is the X-Cache header's value for a call: "hit" when its
// answer comes from the answer cache (or an identical call it follows),
// "miss" otherwise, the cache bypassed or off included.
func cacheHeader(s chat.CacheState) string {
	if s == chat.CacheHit {
		return "hit"
	}
	return "miss"
}

// setCacheHeader sets X-Cache on a response not yet committed.
func setCacheHeader(h http.Header, s chat.CacheState) {
	h.Set("X-Cache", cacheHeader(s))
}
