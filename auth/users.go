package auth

import (
	"context"
	"strings"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
)

// UserChange is a partial update of a user; nil fields stay as they are.
type UserChange struct {
	Name            *string
	Password        *string // the new password
	CurrentPassword string  // required with Password when users change their own
	Role            *ferry.Role
	Disabled        *bool
	// RateLimitRPM and RateLimitTPM override the default rate limits (0:
	// the default again; -1: no limit). Only an admin's change may set
	// them.
	RateLimitRPM *int64
	RateLimitTPM *int64
}

// UpdateSelf applies a user's change to their own account. Changing the
// password needs the current one (Invalid when absent, Unauthorized when
// wrong) and signs out every other session. Role and Disabled are not the
// user's to change (Forbidden).
func (s *Service) UpdateSelf(ctx context.Context, p *ferry.Principal, ch UserChange) (*ferry.User, error) {
	if ch.Role != nil || ch.Disabled != nil {
		return nil, ferry.Errorf(ferry.Forbidden, "only an admin can change role or disabled")
	}
	u, err := s.store.UserByID(ctx, p.User.ID)
	if err != nil {
		return nil, err
	}
	if ch.Password != nil {
		if ch.CurrentPassword == "" {
			return nil, ferry.InvalidField("current_password", "required to change the password")
		}
		var ok bool
		var verr error
		if err := s.withHashing(ctx, false, func() { ok, verr = s.hasher.Verify(ch.CurrentPassword, u.PasswordHash) }); err != nil {
			return nil, err
		}
		if verr != nil {
			return nil, verr
		}
		if !ok {
			return nil, &ferry.Error{Code: ferry.Unauthorized, Message: "current_password is incorrect",
				Fields: map[string]string{"current_password": "incorrect"}}
		}
	}
	if err := s.apply(ctx, u, ch); err != nil {
		return nil, err
	}
	if ch.Password != nil {
		// Other sessions may be someone who learned the old password.
		defer s.changed()
		if err := s.store.RevokeOtherSessions(ctx, u.ID, p.SessionID); err != nil {
			return nil, err
		}
	}
	return u, nil
}

// UpdateUser applies an admin's change to any user. An unknown id is
// NotFound. Disabling a user ends their access at once.
func (s *Service) UpdateUser(ctx context.Context, id string, ch UserChange) (*ferry.User, error) {
	u, err := s.store.UserByID(ctx, id)
	if err != nil {
		return nil, err
	}
	if ch.Role != nil && !ch.Role.Valid() {
		return nil, ferry.InvalidField("role", "must be user or admin")
	}
	defer s.changed()
	if err := s.apply(ctx, u, ch); err != nil {
		return nil, err
	}
	if ch.Password != nil {
		if err := s.store.RevokeOtherSessions(ctx, u.ID, ""); err != nil {
			return nil, err
		}
	}
	return u, nil
}

func (s *Service) apply(ctx context.Context, u *ferry.User, ch UserChange) error {
	if ch.Name != nil {
		name := strings.TrimSpace(*ch.Name)
		if len(name) > 200 {
			return ferry.InvalidField("name", "at most 200 characters")
		}
		u.Name = name
	}
	if ch.Password != nil {
		if err := ValidatePassword(*ch.Password); err != nil {
			return err
		}
		h, err := s.hash(ctx, *ch.Password)
		if err != nil {
			return err
		}
		u.PasswordHash = h
	}
	if ch.Role != nil {
		u.Role = *ch.Role
	}
	if ch.Disabled != nil {
		u.Disabled = *ch.Disabled
	}
	for _, l := range []struct {
		field string
		v     *int64
		dst   *int64
	}{{"rate_limit_rpm", ch.RateLimitRPM, &u.Limits.RPM}, {"rate_limit_tpm", ch.RateLimitTPM, &u.Limits.TPM}} {
		if l.v == nil {
			continue
		}
		if *l.v < -1 {
			return ferry.InvalidField(l.field, "a number of at least 1, or 0 for the default, or -1 for no limit")
		}
		*l.dst = *l.v
	}
	return s.store.UpdateUser(ctx, u)
}

// DeleteUser deletes the user with everything they own; their credentials
// stop working at once. An unknown id is NotFound.
func (s *Service) DeleteUser(ctx context.Context, id string) error {
	defer s.changed()
	return s.store.DeleteUser(ctx, id)
}

// User returns the user with id, or NotFound.
func (s *Service) User(ctx context.Context, id string) (*ferry.User, error) {
	return s.store.UserByID(ctx, id)
}

// Users returns one page of users whose email contains emailFilter, and the
// total that match.
func (s *Service) Users(ctx context.Context, emailFilter string, page ferry.Page) ([]*ferry.User, int, error) {
	return s.store.ListUsers(ctx, store.UserFilter{Email: strings.ToLower(emailFilter), Page: page})
}

// EnsureAdmin creates an admin with email and password unless a user with
// that email exists; run uses it for FERRY_ADMIN_EMAIL. It reports whether
// it created one.
func (s *Service) EnsureAdmin(ctx context.Context, email, password string) (bool, error) {
	_, err := s.CreateUser(ctx, email, password, "", ferry.RoleAdmin)
	if ferry.ErrorCode(err) == ferry.Conflict {
		return false, nil
	}
	return err == nil, err
}
