package httpapi

import (
	"context"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/auth"
)

func handleGetMe() func(context.Context, *struct{}) (*userOutput, error) {
	return func(ctx context.Context, _ *struct{}) (*userOutput, error) {
		return &userOutput{Body: newUserBody(principal(ctx).User)}, nil
	}
}

type updateMeInput struct {
	Body struct {
		Name            *string `json:"name,omitempty" maxLength:"200"`
		Password        *string `json:"password,omitempty" minLength:"8" maxLength:"256" doc:"New password; needs current_password. Signs out your other sessions."`
		CurrentPassword string  `json:"current_password,omitempty" maxLength:"1024"`
	}
}

func handleUpdateMe(a *auth.Service) func(context.Context, *updateMeInput) (*userOutput, error) {
	return func(ctx context.Context, in *updateMeInput) (*userOutput, error) {
		u, err := a.UpdateSelf(ctx, principal(ctx), auth.UserChange{
			Name: in.Body.Name, Password: in.Body.Password, CurrentPassword: in.Body.CurrentPassword,
		})
		if err != nil {
			return nil, err
		}
		return &userOutput{Body: newUserBody(u)}, nil
	}
}

func handleDeleteMe(a *auth.Service, revoke func(userID string)) func(context.Context, *struct{}) (*struct{}, error) {
	return func(ctx context.Context, _ *struct{}) (*struct{}, error) {
		id := principal(ctx).User.ID
		if err := a.DeleteUser(ctx, id); err != nil {
			return nil, err
		}
		revoke(id)
		return nil, nil
	}
}

type listUsersInput struct {
	Email  string `query:"email" maxLength:"254" doc:"Only users whose email contains this."`
	Limit  int    `query:"limit" minimum:"1" maximum:"100" default:"20"`
	Offset int    `query:"offset" minimum:"0" default:"0"`
}

type usersOutput struct {
	Body struct {
		Items  []userBody `json:"items"`
		Total  int        `json:"total"`
		Limit  int        `json:"limit"`
		Offset int        `json:"offset"`
	}
}

func handleListUsers(a *auth.Service) func(context.Context, *listUsersInput) (*usersOutput, error) {
	return func(ctx context.Context, in *listUsersInput) (*usersOutput, error) {
		users, total, err := a.Users(ctx, in.Email, ferry.Page{Limit: in.Limit, Offset: in.Offset})
		if err != nil {
			return nil, err
		}
		out := &usersOutput{}
		out.Body.Items = make([]userBody, len(users))
		for i, u := range users {
			out.Body.Items[i] = newUserBody(u)
		}
		out.Body.Total, out.Body.Limit, out.Body.Offset = total, in.Limit, in.Offset
		return out, nil
	}
}

func handleGetUser(a *auth.Service) func(context.Context, *idInput) (*userOutput, error) {
	return func(ctx context.Context, in *idInput) (*userOutput, error) {
		u, err := a.User(ctx, in.ID)
		if err != nil {
			return nil, err
		}
		return &userOutput{Body: newUserBody(u)}, nil
	}
}

type updateUserInput struct {
	ID   string `path:"id" maxLength:"64"`
	Body struct {
		Name     *string     `json:"name,omitempty" maxLength:"200"`
		Role     *ferry.Role `json:"role,omitempty" enum:"user,admin"`
		Disabled *bool       `json:"disabled,omitempty" doc:"A disabled user's tokens and keys stop working at once."`
		// Rate limit overrides (issue 10).
		RateLimitRPM *int64 `json:"rate_limit_rpm,omitempty" minimum:"-1" doc:"Model calls a minute for this user in place of FERRY_RATE_LIMIT_RPM; 0: the default again; -1: no limit."`
		RateLimitTPM *int64 `json:"rate_limit_tpm,omitempty" minimum:"-1" doc:"Tokens a minute for this user in place of FERRY_RATE_LIMIT_TPM; 0: the default again; -1: no limit."`
	}
}

func handleUpdateUser(a *auth.Service, revoke func(userID string)) func(context.Context, *updateUserInput) (*userOutput, error) {
	return func(ctx context.Context, in *updateUserInput) (*userOutput, error) {
		u, err := a.UpdateUser(ctx, in.ID, auth.UserChange{Name: in.Body.Name, Role: in.Body.Role, Disabled: in.Body.Disabled,
			RateLimitRPM: in.Body.RateLimitRPM, RateLimitTPM: in.Body.RateLimitTPM})
		if err != nil {
			return nil, err
		}
		if u.Disabled {
			revoke(u.ID)
		}
		return &userOutput{Body: newUserBody(u)}, nil
	}
}

func handleDeleteUser(a *auth.Service, revoke func(userID string)) func(context.Context, *idInput) (*struct{}, error) {
	return func(ctx context.Context, in *idInput) (*struct{}, error) {
		if err := a.DeleteUser(ctx, in.ID); err != nil {
			return nil, err
		}
		revoke(in.ID)
		return nil, nil
	}
}

// revokeUser ends the model calls of a user who was disabled or deleted,
// so that none runs on past the change: those on this instance at once,
// those on others through Options.UserRevoked. The change itself is made
// first, so that the user cannot start another call meanwhile.
func (s *server) revokeUser(userID string) {
	if s.svc.Chat != nil {
		s.svc.Chat.CancelUser(userID)
	}
	if s.opts.UserRevoked != nil {
		s.opts.UserRevoked(userID)
	}
}

// handleUnblockUser lifts the sign-in blocks on a user's account, from
// every address, so they can sign in again at once.
func handleUnblockUser(a *auth.Service) func(context.Context, *idInput) (*struct{}, error) {
	return func(ctx context.Context, in *idInput) (*struct{}, error) {
		return nil, a.UnblockUser(ctx, in.ID)
	}
}
