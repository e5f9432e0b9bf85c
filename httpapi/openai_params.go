package httpapi

// The sampling parameters of /v1/chat/completions: read as OpenAI defines
// them, refused with a 400 naming the parameter when Ferry cannot relay
// what they ask for, and handed to the chat funnel as llm.Sampling, whose
// Check refuses what the routed provider cannot honour. Nothing is dropped
// in silence: a field Ferry does not read itself reaches an
// OpenAI-compatible server as it was sent, and is refused for the other
// providers unless it changes nothing in the answer.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/danielgtaylor/huma/v2"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/llm"
)

// completionFields are the request fields completionRequest reads; every
// other one is an extra.
var completionFields = []string{
	"model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "n", "logprobs",
	"temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty", "response_format", "user",
	"cache",
}

// inertFields are the Chat Completions fields that change nothing in the
// answer's text: OpenAI-compatible servers get them, the other providers
// go without.
var inertFields = map[string]bool{
	"metadata": true, "store": true, "service_tier": true, "parallel_tool_calls": true,
	"prompt_cache_key": true, "safety_identifier": true,
}

// unrelayed are the Chat Completions fields whose answer Ferry cannot pass
// on, whatever the provider: each with the values that ask for nothing,
// and why anything else is refused.
var unrelayed = []unrelayedField{
	{"tools", nil, "tool calls are not supported yet; leave it out"},
	{"tool_choice", []string{`"none"`}, `tool calls are not supported yet; leave it out or send "none"`},
	{"functions", nil, "function calls are not supported yet; leave it out"},
	{"function_call", []string{`"none"`}, `function calls are not supported yet; leave it out or send "none"`},
	{"audio", nil, "Ferry answers in text only; leave it out"},
	{"modalities", []string{`["text"]`}, `Ferry answers in text only; leave it out or send ["text"]`},
	{"top_logprobs", []string{"0"}, "log probabilities are not supported; leave it out"},
}

type unrelayedField struct {
	name  string
	unset []string // besides null, [] and {}: as JSON, without spaces
	why   string
}

// maxStop is how many stop sequences OpenAI's API takes.
const maxStop = 4

// UnmarshalJSON reads the request and keeps the fields it does not read
// itself as they were sent, for sampling.
func (b *completionRequest) UnmarshalJSON(data []byte) error {
	type plain completionRequest // without this method
	if err := json.Unmarshal(data, (*plain)(b)); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return err
	}
	for _, name := range completionFields {
		delete(all, name)
	}
	b.others = all
	return nil
}

// sampling returns the request's sampling parameters, or an Invalid error
// naming the first one Ferry cannot relay, whatever the provider.
func (b *completionRequest) sampling() (llm.Sampling, error) {
	if b.N != nil && *b.N != 1 {
		return llm.Sampling{}, ferry.InvalidField("n", "Ferry returns one choice; leave it out or send 1")
	}
	if b.Logprobs != nil && *b.Logprobs {
		return llm.Sampling{}, ferry.InvalidField("logprobs", "log probabilities are not supported; leave it out or send false")
	}
	for _, u := range unrelayed {
		if v, ok := b.others[u.name]; ok && !isUnset(v) && !slices.Contains(u.unset, compact(v)) {
			return llm.Sampling{}, ferry.InvalidField(u.name, u.why)
		}
	}
	s := llm.Sampling{Temperature: b.Temperature, TopP: b.TopP, Seed: b.Seed, PresencePenalty: b.PresencePenalty,
		FrequencyPenalty: b.FrequencyPenalty, User: b.User}
	var err error
	if s.Stop, err = b.Stop.sequences(); err != nil {
		return llm.Sampling{}, err
	}
	if s.Format, err = b.ResponseFormat.format(); err != nil {
		return llm.Sampling{}, err
	}
	names := make([]string, 0, len(b.others))
	for name, v := range b.others {
		if !isUnset(v) && !slices.ContainsFunc(unrelayed, func(u unrelayedField) bool { return u.name == name }) {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		s.Extra = append(s.Extra, llm.Field{Name: name, Value: b.others[name], Inert: inertFields[name]})
	}
	return s, nil
}

// isUnset reports whether v asks for nothing: null, or an empty array or
// object.
func isUnset(v json.RawMessage) bool {
	switch compact(v) {
	case "null", "[]", "{}":
		return true
	}
	return false
}

// compact is v without insignificant spaces.
func compact(v json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, v) != nil {
		return string(v)
	}
	return b.String()
}

// stopSequences is OpenAI's stop: one string, or an array of them.
type stopSequences struct {
	raw json.RawMessage
}

func (s *stopSequences) UnmarshalJSON(b []byte) error {
	s.raw = append(s.raw[:0], b...)
	return nil
}

func (stopSequences) Schema(huma.Registry) *huma.Schema {
	return &huma.Schema{Description: fmt.Sprintf("Up to %d sequences that end the answer where they would appear. "+
		"Anthropic refuses sequences of whitespace only (\"\\n\").", maxStop),
		OneOf: []*huma.Schema{{Type: "string"}, {Type: "array", Items: &huma.Schema{Type: "string"}}}}
}

// sequences returns the stop sequences; nil for none.
func (s stopSequences) sequences() ([]string, error) {
	if len(s.raw) == 0 || isUnset(s.raw) {
		return nil, nil
	}
	var list []string
	var one string
	if json.Unmarshal(s.raw, &one) == nil {
		list = []string{one}
	} else if json.Unmarshal(s.raw, &list) != nil {
		return nil, ferry.InvalidField("stop", "must be a string or an array of strings")
	}
	if len(list) > maxStop {
		return nil, ferry.InvalidField("stop", fmt.Sprintf("at most %d sequences; this has %d", maxStop, len(list)))
	}
	if slices.Contains(list, "") {
		return nil, ferry.InvalidField("stop", "a stop sequence must not be empty")
	}
	return list, nil
}

// responseFormat is OpenAI's response_format.
type responseFormat struct {
	_          struct{}          `json:"-" additionalProperties:"true"`
	Type       string            `json:"type" enum:"text,json_object,json_schema" doc:"json_object: OpenAI-compatible servers and Ollama; json_schema: the same, with json_schema.schema; Anthropic: 400."`
	JSONSchema *jsonSchemaFormat `json:"json_schema,omitempty"`
}

type jsonSchemaFormat struct {
	_           struct{}   `json:"-" additionalProperties:"true"`
	Name        string     `json:"name" maxLength:"64"`
	Description string     `json:"description,omitempty"`
	Schema      jsonObject `json:"schema" doc:"The JSON Schema the answer matches."`
	Strict      *bool      `json:"strict,omitempty"`
}

// jsonObject is a JSON object kept as it was sent.
type jsonObject struct {
	raw json.RawMessage
}

func (o *jsonObject) UnmarshalJSON(b []byte) error {
	o.raw = append(o.raw[:0], b...)
	return nil
}

func (jsonObject) Schema(huma.Registry) *huma.Schema {
	return &huma.Schema{Type: "object", AdditionalProperties: true}
}

// format returns the llm.Format f asks for; nil for text.
func (f *responseFormat) format() (*llm.Format, error) {
	switch {
	case f == nil || f.Type == "text":
		return nil, nil
	case f.Type == "json_object":
		return &llm.Format{}, nil
	case f.JSONSchema == nil:
		return nil, ferry.InvalidField("response_format.json_schema", "is required with type json_schema")
	}
	s := f.JSONSchema
	if len(s.Schema.raw) == 0 || bytes.TrimSpace(s.Schema.raw)[0] != '{' {
		return nil, ferry.InvalidField("response_format.json_schema.schema", "must be a JSON Schema object")
	}
	return &llm.Format{Schema: s.Schema.raw, Name: s.Name, Description: s.Description, Strict: s.Strict}, nil
}
