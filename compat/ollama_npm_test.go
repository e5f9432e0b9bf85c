package compat_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/store/storetest"
)

// npmDir holds the npm clients' tests and, after `npm ci`, their packages.
const npmDir = "npm"

// node returns the node binary, skipping the test when node or the npm
// package it needs is not installed. CI has both: .ci/run runs `npm ci`.
func node(t *testing.T, pkg string) string {
	t.Helper()
	bin, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed; install Node.js 20 or later to run the npm clients' tests")
	}
	if _, err := os.Stat(filepath.Join(npmDir, "node_modules", pkg, "package.json")); err != nil {
		t.Skipf("compat/npm/node_modules/%s is missing; run `npm ci` in compat/npm", pkg)
	}
	return bin
}

// ranTests finds the spec reporter's count of passed tests, when not 0.
var ranTests = regexp.MustCompile(`(?m)^ℹ pass [1-9]`)

// runNode runs `node --test file` in compat/npm with env added, and fails
// the test with node's output when a test in it failed.
func runNode(t *testing.T, bin, file string, env ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--test", "--test-reporter=spec", file)
	cmd.Dir = npmDir
	// PATH and HOME only: nothing of a developer's OLLAMA_* settings.
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "NO_COLOR=1"}, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test %s: %v\n%s", file, err, out)
	}
	// node exits 0 for a file whose tests were all skipped, or that it
	// found nothing in.
	if !ranTests.Match(out) {
		t.Fatalf("node --test %s ran no test:\n%s", file, out)
	}
	t.Logf("node --test %s:\n%s", file, out)
}

// TestOllamaNPMClient drives Ferry's Ollama proxy with Ollama's official
// JavaScript client (compat/npm/ollama.test.mjs): generating, chatting and
// embedding, streamed and not, listing, and its errors; then, with Ollama
// stopped, the error it reports. Every model call is in the usage log
// under the API key.
func TestOllamaNPMClient(t *testing.T) {
	t.Parallel()
	bin := node(t, "ollama")
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			g := newGateway(t, gatewayOptions{engine: engine, only: []string{"ollama"}})
			g.fake.SetScript(llmtest.Script{Deltas: tricky, InputTokens: 7, OutputTokens: 9, Fragment: true})
			text, _ := json.Marshal(strings.Join(tricky, ""))
			models, _ := json.Marshal(llmtest.DefaultModels("ollama"))
			env := []string{"FERRY_URL=" + g.url, "FERRY_API_KEY=" + g.key,
				"FERRY_EXPECTED_TEXT=" + string(text), "FERRY_EXPECTED_MODELS=" + string(models)}
			runNode(t, bin, "ollama.test.mjs", env...)

			calls := map[string]int{}
			for _, u := range g.usage(t, 5) {
				calls[u.Endpoint]++
				if u.Provider != "ollama" || u.APIKeyID != g.keyID || u.Status != "complete" {
					t.Errorf("usage log entry = %+v, want a complete call under the API key", u)
				}
			}
			if calls["/ollama/api/generate"] != 2 || calls["/ollama/api/chat"] != 2 || calls["/ollama/api/embed"] != 1 {
				t.Errorf("usage log by endpoint = %v, want 2 generate, 2 chat, 1 embed", calls)
			}
			for _, r := range g.fake.Requests() {
				if r.Header.Get("Authorization") != "" {
					t.Errorf("Ollama got an Authorization header on %s: the Ferry key must stay in Ferry", r.Path)
				}
				if strings.Contains(r.Path, "pull") || strings.Contains(r.Path, "delete") {
					t.Errorf("Ollama got %s %s, which Ferry refuses", r.Method, r.Path)
				}
			}

			g.fake.Close()
			runNode(t, bin, "ollama.test.mjs", append(env, "FERRY_OLLAMA_DOWN=1")...)
			failed := 0
			for _, u := range g.usage(t, 6) {
				if u.Status == "failed" && u.Endpoint == "/ollama/api/chat" {
					failed++
				}
			}
			if failed != 1 {
				t.Errorf("%d failed chats in the usage log, want the one Ollama could not answer", failed)
			}
		})
	}
}
