package main

import (
	"net"
	"strings"
	"testing"
)

// TestHealthcheckCommand: ready against a running server, found from HOST
// and PORT (0.0.0.0 asked on loopback); an error against a port where
// nothing listens.
func TestHealthcheckCommand(t *testing.T) {
	t.Parallel()
	in := start(t, sqliteEnv(t))
	_, port, _ := net.SplitHostPort(in.addr)
	env := fakeEnv{vars: map[string]string{"HOST": "0.0.0.0", "PORT": port}}
	if out, _, err := command(t, env, "", "healthcheck"); err != nil || out != "ready\n" {
		t.Errorf("healthcheck of a running server: %q, %v", out, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	if _, _, err := command(t, fakeEnv{}, "", "healthcheck", "--url", "http://"+closed); err == nil || !strings.Contains(err.Error(), "not ready") {
		t.Errorf("healthcheck of nothing: %v, want not ready", err)
	}
}
