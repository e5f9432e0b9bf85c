package httpapi

import (
	"context"
	"time"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
)

type usageInput struct {
	Since string `query:"since" maxLength:"64" doc:"Only calls at or after this time: RFC 3339 (2026-12-01T00:00:00Z) or a date (2026-12-01, midnight UTC)."`
	Until string `query:"until" maxLength:"64" doc:"Only calls before this time, in the same forms as since."`
}

type usageRow struct {
	UserID       string `json:"user_id" doc:"Empty for the calls of users deleted since."`
	Email        string `json:"email"`
	Provider     string `json:"provider"`
	Model        string `json:"model"`
	Requests     int64  `json:"requests"`
	InputTokens  int64  `json:"input_tokens"`
	OutputTokens int64  `json:"output_tokens"`
	Errors       int64  `json:"errors" doc:"Calls that failed; cancelled ones are not counted."`
}

type usageOutput struct {
	Body struct {
		Since *time.Time `json:"since,omitempty"`
		Until *time.Time `json:"until,omitempty"`
		Items []usageRow `json:"items"`
	}
}

// handleUsage sums the usage log per user and model for an admin.
func handleUsage(st *store.Store) func(context.Context, *usageInput) (*usageOutput, error) {
	return func(ctx context.Context, in *usageInput) (*usageOutput, error) {
		since, err := usageTime("since", in.Since)
		if err != nil {
			return nil, err
		}
		until, err := usageTime("until", in.Until)
		if err != nil {
			return nil, err
		}
		if !since.IsZero() && !until.IsZero() && !since.Before(until) {
			return nil, ferry.InvalidField("until", "must be after since")
		}
		sums, err := st.UsageSummaries(ctx, since, until)
		if err != nil {
			return nil, err
		}
		out := &usageOutput{}
		if !since.IsZero() {
			out.Body.Since = &since
		}
		if !until.IsZero() {
			out.Body.Until = &until
		}
		out.Body.Items = make([]usageRow, len(sums))
		for i, s := range sums {
			out.Body.Items[i] = usageRow{UserID: s.UserID, Email: s.Email, Provider: s.Provider, Model: s.Model,
				Requests: s.Requests, InputTokens: s.InputTokens, OutputTokens: s.OutputTokens, Errors: s.Errors}
		}
		return out, nil
	}
}

// usageTime reads a since or until parameter: RFC 3339, or a date taken as
// midnight UTC; "" is the zero time (no bound).
func usageTime(field, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse(time.DateOnly, v); err == nil {
		return t, nil
	}
	return time.Time{}, ferry.InvalidField(field, "want an RFC 3339 time such as 2026-12-01T00:00:00Z, or a date such as 2026-12-01")
}
