package store

import (
	"context"
	"time"
)

// UsageSummary is what one user spent on one model over a period, summed
// from the usage log.
type UsageSummary struct {
	// UserID is "" for the calls of users deleted since, which the log
	// keeps without their user; Email is "" then too.
	UserID       string
	Email        string
	Provider     string
	Model        string
	Requests     int64
	InputTokens  int64
	OutputTokens int64
	// Errors counts the calls that failed (cancelled ones are not errors).
	Errors int64
}

// usageForever stands for an open end of a period: the log's times are
// compared as the engines store them, and these bound every one.
var (
	usageBeginning = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	usageEnd       = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)
)

// UsageSummaries sums the usage log per user, provider and model over the
// calls logged at or after since and before until (a zero time leaves that
// end open), ordered by email, then provider and model.
func (s *Store) UsageSummaries(ctx context.Context, since, until time.Time) ([]UsageSummary, error) {
	if since.IsZero() {
		since = usageBeginning
	}
	if until.IsZero() {
		until = usageEnd
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT COALESCE(l.user_id, ''), COALESCE(u.email, ''), l.provider, l.model,
		COUNT(*), COALESCE(SUM(l.input_tokens), 0), COALESCE(SUM(l.output_tokens), 0),
		COALESCE(SUM(CASE WHEN l.status = 'failed' THEN 1 ELSE 0 END), 0)
		FROM usage_log l LEFT JOIN users u ON u.id = l.user_id
		WHERE l.created_at >= $1 AND l.created_at < $2
		GROUP BY l.user_id, u.email, l.provider, l.model
		ORDER BY COALESCE(u.email, ''), l.provider, l.model, COALESCE(l.user_id, '')`, since.UTC(), until.UTC())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	list := []UsageSummary{}
	for rows.Next() {
		var u UsageSummary
		if err := rows.Scan(&u.UserID, &u.Email, &u.Provider, &u.Model, &u.Requests, &u.InputTokens, &u.OutputTokens,
			&u.Errors); err != nil {
			return nil, err
		}
		list = append(list, u)
	}
	return list, rows.Err()
}
