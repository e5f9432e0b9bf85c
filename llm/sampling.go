package llm

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/ferryhq/ferry"
)

// Sampling shapes how a model draws its answer. The parameters take the
// names and meanings of OpenAI's Chat Completions API, which every adapter
// maps onto its own upstream's. A nil or empty field is unset: the
// upstream's own default applies. Sampling.Check tells whether a provider
// honours them all.
type Sampling struct {
	Temperature      *float64
	TopP             *float64
	TopK             *int     // draw from the k likeliest tokens only (Anthropic's and Ollama's top_k; OpenAI has none)
	Stop             []string // sequences that end the answer where they would appear
	Seed             *int64
	PresencePenalty  *float64
	FrequencyPenalty *float64
	// Format asks for an answer in JSON; nil: text.
	Format *Format
	// User is an opaque id of the end user, which OpenAI and Anthropic
	// keep to spot abuse; it changes nothing in the answer, and providers
	// without such a field leave it out.
	User string
	// Extra holds the other fields of a Chat Completions request as the
	// client sent them, in the order to send them. A provider with
	// Support.Extra sends them on as they are; Check refuses the others a
	// request with an Extra field that is not Inert.
	Extra []Field
}

// Format asks for an answer that is one JSON value.
type Format struct {
	// Schema is the JSON Schema the answer must match; nil: any JSON
	// object.
	Schema json.RawMessage
	// Name, Description and Strict go with a Schema where the upstream
	// takes them (OpenAI's json_schema object).
	Name        string
	Description string
	Strict      *bool
}

// Field is one request field passed on as the client sent it.
type Field struct {
	Name  string
	Value json.RawMessage
	// Inert says that the field changes nothing in the answer (OpenAI's
	// store, metadata, service_tier …), so that a provider that cannot
	// send it may leave it out.
	Inert bool
}

// Support says which sampling parameters a provider honours, and in what
// range. The zero value honours none of them.
type Support struct {
	Temperature Range
	TopP        Range
	Penalties   Range // PresencePenalty and FrequencyPenalty
	TopK        bool  // any k; the request checks it is not negative
	Stop        bool
	// BlankStop says that stop sequences of whitespace only ("\n") are
	// taken too.
	BlankStop  bool
	Seed       bool
	JSON       bool // a Format without a Schema
	JSONSchema bool // a Format with one
	Extra      bool // Sampling.Extra, sent as it is
}

// Range is the closed interval of values a parameter takes. The zero Range
// takes none: the parameter is not supported.
type Range struct{ Min, Max float64 }

// Check returns nil when a provider named provider, which supports sup,
// honours every parameter set in s. Otherwise it returns an Invalid
// *ferry.Error whose field is the first parameter it cannot honour, by its
// Chat Completions name ("temperature", "seed", "response_format", or an
// Extra field's), saying what it takes instead. A penalty of 0 is no
// penalty, which every provider honours.
func (s Sampling) Check(provider string, sup Support) error {
	for _, p := range []struct {
		name    string
		v       *float64
		r       Range
		neutral bool // 0 asks for nothing: fine where unsupported
	}{
		{"temperature", s.Temperature, sup.Temperature, false},
		{"top_p", s.TopP, sup.TopP, false},
		{"presence_penalty", s.PresencePenalty, sup.Penalties, true},
		{"frequency_penalty", s.FrequencyPenalty, sup.Penalties, true},
	} {
		switch {
		case p.v == nil:
		case p.r == Range{}:
			if !p.neutral || *p.v != 0 {
				return unsupported(p.name, provider)
			}
		case *p.v < p.r.Min || *p.v > p.r.Max:
			return ferry.InvalidField(p.name, fmt.Sprintf("must be between %s and %s for %s models",
				formatFloat(p.r.Min), formatFloat(p.r.Max), provider))
		}
	}
	if s.TopK != nil && !sup.TopK {
		return unsupported("top_k", provider)
	}
	if len(s.Stop) > 0 && !sup.Stop {
		return unsupported("stop", provider)
	}
	for _, stop := range s.Stop {
		if !sup.BlankStop && strings.TrimSpace(stop) == "" {
			return ferry.InvalidField("stop", fmt.Sprintf("%s models refuse stop sequences of whitespace only, such as %q", provider, stop))
		}
	}
	if s.Seed != nil && !sup.Seed {
		return unsupported("seed", provider)
	}
	if f := s.Format; f != nil {
		if f.Schema == nil && !sup.JSON {
			return ferry.InvalidField("response_format", fmt.Sprintf("%s models have no JSON mode (json_object); leave it out and ask for JSON in the prompt", provider))
		}
		if f.Schema != nil && !sup.JSONSchema {
			return ferry.InvalidField("response_format", fmt.Sprintf("%s models do not take a JSON schema (json_schema); leave it out and describe the JSON in the prompt", provider))
		}
	}
	if !sup.Extra {
		for _, f := range s.Extra {
			if !f.Inert {
				return unsupported(f.Name, provider)
			}
		}
	}
	return nil
}

func unsupported(param, provider string) *ferry.Error {
	return ferry.InvalidField(param, fmt.Sprintf("%s models do not support it; leave it out", provider))
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }
