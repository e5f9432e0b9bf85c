package main

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"strings"
	"testing"
)

func TestUserUnblockCommandUsage(t *testing.T) {
	t.Parallel()
	env := sqliteEnv(t)
	for _, args := range [][]string{
		{"user", "unblock"},
		{"user", "unblock", "--email", "a@example.com", "--address", "192.0.2.1"},
		{"user", "unblock", "a@example.com"},
	} {
		if _, _, err := command(t, env, "", args...); !errors.Is(err, errUsage) {
			t.Errorf("%v: %v, want usage", args, err)
		}
	}
	// Without Redis the counts are in the server's memory: say where to go.
	_, _, err := command(t, env, "", "user", "unblock", "--email", "a@example.com")
	if err == nil || !strings.Contains(err.Error(), "POST /users/{id}/unblock") {
		t.Errorf("without Redis: %v, want the API named", err)
	}
}

// TestUserUnblockCommand blocks an account and an address on a running
// server sharing Redis, and lifts both blocks from the command line. The
// client's address comes through X-Forwarded-For from a trusted proxy, so
// the test also shows FERRY_TRUSTED_PROXIES reaching the limits, and leaves
// the loopback address other tests register from alone.
func TestUserUnblockCommand(t *testing.T) {
	t.Parallel()
	if os.Getenv("FERRY_TEST_DATABASE_URL") == "" || os.Getenv("FERRY_TEST_REDIS_URL") == "" {
		t.Skip("FERRY_TEST_DATABASE_URL and FERRY_TEST_REDIS_URL not both set: skipping the unblock command")
	}
	env := engineEnv(t, "postgres")
	env.vars["FERRY_TRUSTED_PROXIES"] = "127.0.0.1, ::1"
	// Counts in Redis outlive the test: an address of its own each run.
	n, _ := rand.Int(rand.Reader, big.NewInt(1<<16))
	client := fmt.Sprintf("198.18.%d.%d", n.Int64()>>8, n.Int64()&0xff)
	t.Cleanup(func() { command(t, env, "", "user", "unblock", "--address", client) })

	if _, stderr, err := command(t, env, "victim password\n", "user", "create", "--email", "victim@example.com", "--password-stdin"); err != nil {
		t.Fatalf("user create: %v %s", err, stderr)
	}
	in := start(t, env)
	post := func(path string, body map[string]string) (int, string) {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", in.url+path, bytes.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-For", client)
		res, err := in.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out bytes.Buffer
		out.ReadFrom(res.Body)
		return res.StatusCode, out.String()
	}
	login := func(password string) (int, string) {
		return post("/auth/login", map[string]string{"email": "victim@example.com", "password": password})
	}

	// DefaultPolicy: ten failures, the last five held a few seconds in all.
	for i := range 10 {
		if status, body := login("guess"); status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d %s", i+1, status, body)
		}
	}
	if status, body := login("victim password"); status != http.StatusTooManyRequests || !strings.Contains(body, "try again in 15 minutes") {
		t.Fatalf("blocked account: %d %s; want 429 saying how long to wait", status, body)
	}
	out, stderr, err := command(t, env, "", "user", "unblock", "--email", "Victim@Example.com")
	if err != nil || !strings.HasPrefix(out, "unblocked victim@example.com (") {
		t.Fatalf("user unblock --email: %q %v %s", out, err, stderr)
	}
	if status, body := login("victim password"); status != http.StatusOK {
		t.Fatalf("after user unblock --email: %d %s", status, body)
	}
	if _, _, err := command(t, env, "", "user", "unblock", "--email", "nobody@example.com"); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("unknown email: %v, want not found", err)
	}

	for i := range 5 {
		if status, body := post("/auth/register", map[string]string{"email": fmt.Sprintf("u%d@example.com", i), "password": "a long password"}); status != http.StatusCreated {
			t.Fatalf("registration %d: %d %s", i+1, status, body)
		}
	}
	if status, body := post("/auth/register", map[string]string{"email": "u5@example.com", "password": "a long password"}); status != http.StatusTooManyRequests {
		t.Fatalf("sixth registration: %d %s; want 429", status, body)
	}
	if out, stderr, err := command(t, env, "", "user", "unblock", "--address", client); err != nil || out != "unblocked address "+client+"\n" {
		t.Fatalf("user unblock --address: %q %v %s", out, err, stderr)
	}
	if status, body := post("/auth/register", map[string]string{"email": "u5@example.com", "password": "a long password"}); status != http.StatusCreated {
		t.Fatalf("registration after user unblock --address: %d %s", status, body)
	}
	if _, _, err := command(t, env, "", "user", "unblock", "--address", "not-an-address"); err == nil {
		t.Error("a bad address was accepted")
	}
}
