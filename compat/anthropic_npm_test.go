package compat_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ferryhq/ferry/llm/llmtest"
)

// TestAnthropicNPMClient drives Ferry's Messages API with Anthropic's
// official JavaScript client (compat/npm/anthropic.test.mjs): streaming,
// in one piece with the key in x-api-key, counting tokens, and its error
// classes, to each provider.
func TestAnthropicNPMClient(t *testing.T) {
	t.Parallel()
	bin := node(t, "@anthropic-ai/sdk")
	for _, rt := range routes {
		t.Run(rt.provider, func(t *testing.T) {
			t.Parallel()
			g := newGateway(t, gatewayOptions{})
			g.fake.SetScript(llmtest.Script{Deltas: tricky, InputTokens: 7, OutputTokens: 9, Fragment: true})
			text, _ := json.Marshal(strings.Join(tricky, ""))
			runNode(t, bin, "anthropic.test.mjs", "FERRY_URL="+g.url, "FERRY_API_KEY="+g.key, "FERRY_MODEL="+rt.model,
				"FERRY_EXPECTED_TEXT="+string(text))
			for _, u := range g.usage(t, 2) {
				if u.Endpoint != "/v1/messages" || u.Provider != rt.provider || u.APIKeyID != g.keyID || u.Status != "complete" {
					t.Errorf("usage log entry = %+v", u)
				}
			}
		})
	}
}
