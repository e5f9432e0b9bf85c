package httpapi

import (
	"net/netip"
	"testing"
)

func TestClientAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	for _, tc := range []struct {
		name      string
		peer      string
		forwarded []string
		want      string
	}{
		{"no proxy", "203.0.113.1", nil, "203.0.113.1"},
		{"untrusted peer's header ignored", "203.0.113.1", []string{"192.0.2.1"}, "203.0.113.1"},
		{"trusted peer without a header", "10.0.0.1", nil, "10.0.0.1"},
		{"trusted peer", "10.0.0.1", []string{"192.0.2.1"}, "192.0.2.1"},
		{"right-most untrusted entry", "10.0.0.1", []string{"198.51.100.9, 192.0.2.1"}, "192.0.2.1"},
		{"trusted hops skipped", "10.0.0.1", []string{"192.0.2.1, 10.1.1.1", "10.2.2.2"}, "192.0.2.1"},
		{"several header lines", "10.0.0.1", []string{"198.51.100.9", "192.0.2.1"}, "192.0.2.1"},
		{"with ports", "10.0.0.1", []string{"192.0.2.1:4711"}, "192.0.2.1"},
		{"IPv6 with port", "fd00::1", []string{"[2001:db8::1]:4711"}, "2001:db8::1"},
		{"IPv4-mapped", "::ffff:10.0.0.1", []string{"::ffff:192.0.2.1"}, "192.0.2.1"},
		{"garbage stops the walk at the last trusted hop", "10.0.0.1", []string{"192.0.2.1, nonsense, 10.0.0.2"}, "10.0.0.2"},
		{"all hops trusted", "10.0.0.1", []string{"10.0.0.3, 10.0.0.2"}, "10.0.0.3"},
		{"empty header", "10.0.0.1", []string{""}, "10.0.0.1"},
	} {
		r := remote{peer: tc.peer, forwarded: tc.forwarded}
		if got := r.clientAddr(trusted); got != tc.want {
			t.Errorf("%s: clientAddr = %q; want %q", tc.name, got, tc.want)
		}
	}
	if got := (remote{peer: "10.0.0.1", forwarded: []string{"192.0.2.1"}}).clientAddr(nil); got != "10.0.0.1" {
		t.Errorf("with no trusted proxies: clientAddr = %q; want the peer", got)
	}
}
