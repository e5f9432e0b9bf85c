package config

import (
	"os"
	"strings"
	"testing"
)

// TestReadmeListsEverySetting keeps the README's settings table in step with
// Settings, the table `ferry serve --help` prints.
func TestReadmeListsEverySetting(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range Settings {
		def := s.Default
		if def == "" {
			def = "(empty)"
		}
		if row := "| `" + s.Env + "` | `" + def + "` |"; !strings.Contains(string(b), row) {
			t.Errorf("README lacks the row for %s with default %q", s.Env, def)
		}
	}
}
