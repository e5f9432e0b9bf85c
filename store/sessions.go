package store

import (
	"context"
	"database/sql"
	"time"

	"github.com/ferryhq/ferry"
)

// CreateSession stores sess with its first refresh token (by hash).
func (s *Store) CreateSession(ctx context.Context, sess *ferry.Session, refreshHash string) error {
	return s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `INSERT INTO sessions (id, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)`,
			sess.ID, sess.UserID, sess.CreatedAt, sess.ExpiresAt); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO refresh_tokens (hash, session_id, created_at) VALUES ($1, $2, $3)`,
			refreshHash, sess.ID, sess.CreatedAt)
		return err
	})
}

// errRefresh is the one answer to any refresh token that cannot be used, so
// a client learns nothing about why.
var errRefresh = ferry.Errorf(ferry.Unauthorized, "invalid refresh token")

// ErrRefreshReused is RotateRefreshToken's answer to a token spent before:
// the same message as any unusable token, but callers can tell (with
// errors.Is) that a session was revoked because of it.
var ErrRefreshReused = ferry.Errorf(ferry.Unauthorized, "invalid refresh token")

// RotateRefreshToken spends the refresh token with hash oldHash and stores
// newHash in its place, returning the session. A token that is unknown, or
// whose session is revoked or expired, is Unauthorized. A token that was
// already spent is Unauthorized too, and revokes its whole session: someone
// else holds a copy.
func (s *Store) RotateRefreshToken(ctx context.Context, oldHash, newHash string, now time.Time) (*ferry.Session, error) {
	var sess ferry.Session
	err := s.tx(ctx, func(tx *sql.Tx) error {
		var usedAt *time.Time
		err := tx.QueryRowContext(ctx, `SELECT s.id, s.user_id, s.created_at, s.expires_at, s.revoked_at, t.used_at
			FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id WHERE t.hash = $1`, oldHash).
			Scan(&sess.ID, &sess.UserID, &sess.CreatedAt, &sess.ExpiresAt, &sess.RevokedAt, &usedAt)
		if err == sql.ErrNoRows {
			return errRefresh
		}
		if err != nil {
			return err
		}
		if sess.RevokedAt != nil || !now.Before(sess.ExpiresAt) {
			return errRefresh
		}
		if usedAt != nil {
			if _, err := tx.ExecContext(ctx, `UPDATE sessions SET revoked_at = $1 WHERE id = $2`, now, sess.ID); err != nil {
				return err
			}
			return commitErr{ErrRefreshReused}
		}
		// The used_at condition makes two racing refreshes with one token
		// produce one winner even on engines that let both read it unused.
		res, err := tx.ExecContext(ctx, `UPDATE refresh_tokens SET used_at = $1 WHERE hash = $2 AND used_at IS NULL`, now, oldHash)
		if err := affected(res, err, "refresh token"); err != nil {
			return errRefresh
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO refresh_tokens (hash, session_id, created_at) VALUES ($1, $2, $3)`,
			newHash, sess.ID, now)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &sess, nil
}

// RevokeSession ends the session with id, if it is the user's. Revoking one
// already revoked is not an error.
func (s *Store) RevokeSession(ctx context.Context, userID, id string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE sessions SET revoked_at = COALESCE(revoked_at, $1) WHERE id = $2 AND user_id = $3`,
		time.Now().UTC(), id, userID)
	return affected(res, err, "session")
}

// RevokeOtherSessions ends every session of the user except keep.
func (s *Store) RevokeOtherSessions(ctx context.Context, userID, keep string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND id <> $3 AND revoked_at IS NULL`,
		time.Now().UTC(), userID, keep)
	return err
}

// SessionUser returns the live session with id and its user, for
// authenticating an access token. A session that is revoked, expired or
// unknown is Unauthorized.
func (s *Store) SessionUser(ctx context.Context, id string, now time.Time) (*ferry.Session, *ferry.User, error) {
	var sess ferry.Session
	var u ferry.User
	err := s.rdb.QueryRowContext(ctx, sessionUserQuery, id).
		Scan(&sess.ID, &sess.UserID, &sess.CreatedAt, &sess.ExpiresAt, &sess.RevokedAt,
			&u.ID, &u.Email, &u.Name, &u.PasswordHash, &u.Role, &u.Disabled, &u.CreatedAt, &u.UpdatedAt, &u.Limits.RPM, &u.Limits.TPM)
	if err == sql.ErrNoRows || (err == nil && (sess.RevokedAt != nil || !now.Before(sess.ExpiresAt))) {
		return nil, nil, ferry.Errorf(ferry.Unauthorized, "session has ended; sign in again")
	}
	if err != nil {
		return nil, nil, err
	}
	return &sess, &u, nil
}

var sessionUserQuery = `SELECT s.id, s.user_id, s.created_at, s.expires_at, s.revoked_at, ` + prefixed("u", userColumns) + `
	FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1`
