package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/config"
)

// TestDeployFiles checks that the deployment files name what Ferry has:
// the commands they run exist, and every FERRY_ setting they set is one
// Ferry reads, so a rename cannot leave them behind.
func TestDeployFiles(t *testing.T) {
	known := map[string]bool{}
	for _, s := range config.Settings {
		known[s.Env] = true
	}
	commandsOf := map[string][]string{
		"Dockerfile":   {"healthcheck", "serve"},
		"fly.toml":     {"migrate"},
		"compose.yaml": {"migrate"},
	}
	setting := regexp.MustCompile(`\b(FERRY_[A-Z_]+|DATABASE_URL|REDIS_URL|SECRET_KEY|HOST|PORT)\b`)
	for file, cmds := range commandsOf {
		b, err := os.ReadFile("../../" + file)
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		for _, name := range cmds {
			if cmd, _ := lookup([]string{name}); cmd == nil || cmd.name != name {
				t.Errorf("%s runs ferry %s, which is no command", file, name)
			}
			if !strings.Contains(text, name) {
				t.Errorf("%s does not run ferry %s", file, name)
			}
		}
		for _, env := range setting.FindAllString(text, -1) {
			if !known[env] {
				t.Errorf("%s sets %s, which Ferry does not read", file, env)
			}
		}
	}
}
