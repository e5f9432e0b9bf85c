package httpapi

import (
	"net"
	"net/netip"
	"strings"

	"github.com/danielgtaylor/huma/v2"
	"github.com/danielgtaylor/huma/v2/adapters/humago"
)

// remote is what a request says about where it came from, recorded by an
// input's Resolve for clientAddr to judge.
type remote struct {
	peer      string   // the TCP peer, host only
	forwarded []string // every X-Forwarded-For line, in order
}

func (r *remote) resolve(ctx huma.Context) {
	host, _, err := net.SplitHostPort(ctx.RemoteAddr())
	if err != nil {
		host = ctx.RemoteAddr()
	}
	r.peer = host
	if req, _ := humago.Unwrap(ctx); req != nil {
		r.forwarded = req.Header.Values("X-Forwarded-For")
	}
}

// clientAddr returns the address the limits count a request under. It is
// the TCP peer unless that is one of the trusted proxies; then it is the
// right-most X-Forwarded-For address that is not a trusted proxy. Entries
// further left were written by whoever sent the request to our first proxy,
// and trusting them would let any client pick its own address and dodge the
// limits.
func (r remote) clientAddr(trusted []netip.Prefix) string {
	client, err := netip.ParseAddr(r.peer)
	if err != nil || !isTrusted(client, trusted) {
		return r.peer
	}
	var hops []string
	for _, line := range r.forwarded {
		hops = append(hops, strings.Split(line, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		a, ok := parseHop(hops[i])
		if !ok {
			// A trusted proxy would not write this: what it came after is
			// not to be believed either. The last trusted hop stands.
			break
		}
		client = a
		if !isTrusted(a, trusted) {
			break
		}
	}
	return client.String()
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	a = a.Unmap()
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseHop reads one X-Forwarded-For entry: an address, or an address and
// port as some proxies write it ("192.0.2.1:4711", "[2001:db8::1]:4711").
func parseHop(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap(), true
	}
	return netip.Addr{}, false
}
