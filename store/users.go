package store

import (
	"context"
	"database/sql"
	"time"

	"github.com/ferryhq/ferry"
)

const userColumns = "id, email, name, password_hash, role, disabled, created_at, updated_at, rate_limit_rpm, rate_limit_tpm"

type scanner interface{ Scan(dest ...any) error }

func scanUser(row scanner) (*ferry.User, error) {
	var u ferry.User
	err := row.Scan(&u.ID, &u.Email, &u.Name, &u.PasswordHash, &u.Role, &u.Disabled, &u.CreatedAt, &u.UpdatedAt, &u.Limits.RPM, &u.Limits.TPM)
	if err != nil {
		return nil, err
	}
	return &u, nil
}

// CreateUser stores u, setting its timestamps. An email already taken is a
// Conflict.
func (s *Store) CreateUser(ctx context.Context, u *ferry.User) error {
	now := time.Now().UTC()
	u.CreatedAt, u.UpdatedAt = now, now
	_, err := s.db.ExecContext(ctx, `INSERT INTO users (`+userColumns+`) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		u.ID, u.Email, u.Name, u.PasswordHash, u.Role, u.Disabled, u.CreatedAt, u.UpdatedAt, u.Limits.RPM, u.Limits.TPM)
	if isUnique(err) {
		return ferry.Errorf(ferry.Conflict, "a user with this email already exists")
	}
	return err
}

// UserByID returns the user with id, or NotFound.
func (s *Store) UserByID(ctx context.Context, id string) (*ferry.User, error) {
	u, err := scanUser(s.rdb.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE id = $1`, id))
	return u, notFound(err, "user")
}

// UserByEmail returns the user with the (normalised) email, or NotFound.
func (s *Store) UserByEmail(ctx context.Context, email string) (*ferry.User, error) {
	u, err := scanUser(s.rdb.QueryRowContext(ctx, `SELECT `+userColumns+` FROM users WHERE email = $1`, email))
	return u, notFound(err, "user")
}

// UserFilter selects users for ListUsers.
type UserFilter struct {
	Email string // substring of the email; empty matches all
	ferry.Page
}

// ListUsers returns one page of users, oldest first, and how many match in
// all.
func (s *Store) ListUsers(ctx context.Context, f UserFilter) ([]*ferry.User, int, error) {
	pattern := likePattern(f.Email)
	var total int
	if err := s.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM users WHERE email LIKE $1 ESCAPE '\'`, pattern).Scan(&total); err != nil {
		return nil, 0, err
	}
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+userColumns+` FROM users WHERE email LIKE $1 ESCAPE '\'
		ORDER BY created_at, id LIMIT $2 OFFSET $3`, pattern, f.Limit, f.Offset)
	if err != nil {
		return nil, 0, err
	}
	defer rows.Close()
	users := []*ferry.User{}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, 0, err
		}
		users = append(users, u)
	}
	return users, total, rows.Err()
}

// UpdateUser saves u's name, password hash, role, disabled flag and rate
// limits, and sets UpdatedAt. A user that does not exist is NotFound.
func (s *Store) UpdateUser(ctx context.Context, u *ferry.User) error {
	u.UpdatedAt = time.Now().UTC()
	res, err := s.db.ExecContext(ctx, `UPDATE users SET name = $1, password_hash = $2, role = $3, disabled = $4, updated_at = $5,
		rate_limit_rpm = $7, rate_limit_tpm = $8
		WHERE id = $6`, u.Name, u.PasswordHash, u.Role, u.Disabled, u.UpdatedAt, u.ID, u.Limits.RPM, u.Limits.TPM)
	return affected(res, err, "user")
}

// DeleteUser deletes the user and, by cascade, their sessions, keys and
// conversations. A user that does not exist is NotFound.
func (s *Store) DeleteUser(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM users WHERE id = $1`, id)
	return affected(res, err, "user")
}

// affected turns "no row changed" into NotFound about what.
func affected(res sql.Result, err error, what string) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ferry.Errorf(ferry.NotFound, "%s not found", what)
	}
	return nil
}
