package auth

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestREADMEStatesTokenLeeway keeps README's word on the clock leeway of
// access tokens, and on what an expired one answers, in step with the
// code.
func TestREADMEStatesTokenLeeway(t *testing.T) {
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := strings.Join(strings.Fields(string(b)), " ")
	for _, want := range []string{
		fmt.Sprintf("%d s of clock leeway", tokenLeeway/time.Second),
		tokenExpired,
	} {
		if !strings.Contains(readme, want) {
			t.Errorf("README does not say %q", want)
		}
	}
}
