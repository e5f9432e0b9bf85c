package store

import (
	"context"
	"strings"
	"time"

	"github.com/ferryhq/ferry"
)

const keyColumns = "id, user_id, name, prefix, hash, created_at, expires_at, last_used_at, rate_limit_rpm, rate_limit_tpm"

func scanKey(row scanner) (*ferry.APIKey, error) {
	var k ferry.APIKey
	if err := row.Scan(&k.ID, &k.UserID, &k.Name, &k.Prefix, &k.Hash, &k.CreatedAt, &k.ExpiresAt, &k.LastUsedAt, &k.Limits.RPM, &k.Limits.TPM); err != nil {
		return nil, err
	}
	return &k, nil
}

// CreateAPIKey stores k, setting CreatedAt.
func (s *Store) CreateAPIKey(ctx context.Context, k *ferry.APIKey) error {
	k.CreatedAt = time.Now().UTC()
	_, err := s.db.ExecContext(ctx, `INSERT INTO api_keys (`+keyColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		k.ID, k.UserID, k.Name, k.Prefix, k.Hash, k.CreatedAt, k.ExpiresAt, k.LastUsedAt, k.Limits.RPM, k.Limits.TPM)
	return err
}

// APIKeys lists the user's keys, newest first.
func (s *Store) APIKeys(ctx context.Context, userID string) ([]*ferry.APIKey, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE user_id = $1 ORDER BY created_at DESC, id DESC`, userID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	keys := []*ferry.APIKey{}
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// DeleteAPIKey revokes the user's key with id. Another user's key is
// NotFound, as is one that does not exist.
func (s *Store) DeleteAPIKey(ctx context.Context, userID, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM api_keys WHERE id = $1 AND user_id = $2`, id, userID)
	return affected(res, err, "API key")
}

// APIKeyUser returns the key whose secret hashes to hash, and its user. An
// unknown key is NotFound; expiry is the caller's to check.
func (s *Store) APIKeyUser(ctx context.Context, hash string) (*ferry.APIKey, *ferry.User, error) {
	var k ferry.APIKey
	var u ferry.User
	err := s.rdb.QueryRowContext(ctx, apiKeyUserQuery, hash).
		Scan(&k.ID, &k.UserID, &k.Name, &k.Prefix, &k.Hash, &k.CreatedAt, &k.ExpiresAt, &k.LastUsedAt, &k.Limits.RPM, &k.Limits.TPM,
			&u.ID, &u.Email, &u.Name, &u.PasswordHash, &u.Role, &u.Disabled, &u.CreatedAt, &u.UpdatedAt, &u.Limits.RPM, &u.Limits.TPM)
	if err != nil {
		return nil, nil, notFound(err, "API key")
	}
	return &k, &u, nil
}

// TouchAPIKey records that the key was used at t.
func (s *Store) TouchAPIKey(ctx context.Context, id string, t time.Time) error {
	_, err := s.db.ExecContext(ctx, `UPDATE api_keys SET last_used_at = $1 WHERE id = $2`, t, id)
	return err
}

var apiKeyUserQuery = `SELECT ` + prefixed("k", keyColumns) + `, ` + prefixed("u", userColumns) + `
	FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.hash = $1`

// prefixed qualifies each column of a comma-separated list with table alias t.
func prefixed(t, columns string) string {
	cols := strings.Split(columns, ", ")
	for i, c := range cols {
		cols[i] = t + "." + c
	}
	return strings.Join(cols, ", ")
}
