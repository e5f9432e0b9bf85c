package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/auth"
)

// authenticate enforces an operation's Security: it resolves the bearer
// credential to a principal and puts it in the context, or answers 401.
func (s *server) authenticate(ctx huma.Context, next func(huma.Context)) {
	if len(ctx.Operation().Security) == 0 {
		next(ctx)
		return
	}
	scheme, token, _ := strings.Cut(ctx.Header("Authorization"), " ")
	if !strings.EqualFold(scheme, "bearer") {
		token = ""
	}
	if takesAPIKeyHeader(ctx.Operation()) {
		// Anthropic's SDKs send their key as x-api-key; it wins over an
		// Authorization header, which they send only for a token.
		if key := ctx.Header("X-Api-Key"); key != "" {
			token = key
		} else if token == "" {
			s.unauthorized(ctx, "missing API key: send x-api-key: <API key>, or Authorization: Bearer <access token or API key>")
			return
		}
	}
	if token == "" {
		s.unauthorized(ctx, "missing bearer token: send Authorization: Bearer <access token or API key>")
		return
	}
	p, err := s.svc.Auth.Authenticate(ctx.Context(), strings.TrimSpace(token))
	if err != nil {
		var fe *ferry.Error
		if errors.As(err, &fe) && fe.Code == ferry.Unauthorized {
			s.unauthorized(ctx, fe.Message)
			return
		}
		// A database that cannot be reached is a 503 with Retry-After;
		// anything else is logged and an internal error.
		fe = s.public(ctx.Context(), err)
		if fe.RetryAfter > 0 {
			ctx.SetHeader("Retry-After", retryAfter(fe.RetryAfter))
		}
		huma.WriteErr(s.api, ctx, statusOf[fe.Code], fe.Message)
		return
	}
	next(huma.WithContext(ctx, ferry.WithPrincipal(ctx.Context(), p)))
}

// takesAPIKeyHeader reports whether op's security names the x-api-key
// scheme: elsewhere that header is not read.
func takesAPIKeyHeader(op *huma.Operation) bool {
	for _, req := range op.Security {
		if _, ok := req[apiKeyScheme]; ok {
			return true
		}
	}
	return false
}

func (s *server) unauthorized(ctx huma.Context, detail string) {
	ctx.SetHeader("WWW-Authenticate", `Bearer realm="ferry"`)
	huma.WriteErr(s.api, ctx, http.StatusUnauthorized, detail)
}

// principal returns the authenticated caller. Operations with Security
// always have one; authenticate guarantees it.
func principal(ctx context.Context) *ferry.Principal { return ferry.PrincipalFrom(ctx) }

// admin wraps a handler so that only admins reach it; others get 403.
func admin[I, O any](h func(context.Context, *I) (*O, error)) func(context.Context, *I) (*O, error) {
	return func(ctx context.Context, in *I) (*O, error) {
		if !principal(ctx).User.IsAdmin() {
			return nil, ferry.Errorf(ferry.Forbidden, "this needs an admin account")
		}
		return h(ctx, in)
	}
}

type userBody struct {
	ID        string     `json:"id"`
	Email     string     `json:"email"`
	Name      string     `json:"name"`
	Role      ferry.Role `json:"role" enum:"user,admin"`
	Disabled  bool       `json:"disabled"`
	CreatedAt time.Time  `json:"created_at"`
	UpdatedAt time.Time  `json:"updated_at"`
	// An admin's override of FERRY_RATE_LIMIT_RPM and _TPM; absent: the
	// defaults apply.
	RateLimitRPM int64 `json:"rate_limit_rpm,omitempty" doc:"Model calls a minute allowed to this user, overriding FERRY_RATE_LIMIT_RPM; -1: no limit."`
	RateLimitTPM int64 `json:"rate_limit_tpm,omitempty" doc:"Tokens a minute allowed to this user, overriding FERRY_RATE_LIMIT_TPM; -1: no limit."`
}

func newUserBody(u *ferry.User) userBody {
	return userBody{ID: u.ID, Email: u.Email, Name: u.Name, Role: u.Role, Disabled: u.Disabled, CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt,
		RateLimitRPM: u.Limits.RPM, RateLimitTPM: u.Limits.TPM}
}

type userOutput struct{ Body userBody }

type registerInput struct {
	Body struct {
		Email    string `json:"email" maxLength:"254" format:"email" doc:"Your email; it is your sign-in name."`
		Password string `json:"password" minLength:"8" maxLength:"256" doc:"At least 8 characters."`
		Name     string `json:"name,omitempty" maxLength:"200"`
	}
	remote remote
}

// Resolve records where the request came from, for the registration limit.
func (in *registerInput) Resolve(ctx huma.Context) []error {
	in.remote.resolve(ctx)
	return nil
}

// handleRegister creates an account, within the limit on registrations
// from one client address (see remote.clientAddr for which address).
func handleRegister(a *auth.Service, trusted []netip.Prefix) func(context.Context, *registerInput) (*userOutput, error) {
	return func(ctx context.Context, in *registerInput) (*userOutput, error) {
		u, err := a.Register(ctx, in.Body.Email, in.Body.Password, in.Body.Name, in.remote.clientAddr(trusted))
		if err != nil {
			return nil, err
		}
		return &userOutput{Body: newUserBody(u)}, nil
	}
}

type tokenBody struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type" example:"bearer"`
	ExpiresIn    int    `json:"expires_in" doc:"Seconds until the access token expires."`
}

type tokenOutput struct{ Body tokenBody }

func newTokenOutput(p *auth.TokenPair) *tokenOutput {
	return &tokenOutput{Body: tokenBody{AccessToken: p.AccessToken, RefreshToken: p.RefreshToken, TokenType: "bearer",
		ExpiresIn: int(p.ExpiresIn.Round(time.Second).Seconds())}}
}

// loginInput takes the body raw: the login accepts JSON and the OAuth2
// password form that FastAPI clients and the docs page's Authorize button
// send, and huma binds only one of them.
type loginInput struct {
	ContentType string `header:"Content-Type"`
	RawBody     []byte
	remote      remote
}

type loginJSON struct {
	Email    string `json:"email" maxLength:"254"`
	Password string `json:"password" maxLength:"1024"`
}

func loginOperation() huma.Operation {
	schema := huma.Schema{Type: "object", Required: []string{"password"}, Properties: map[string]*huma.Schema{
		"email": {Type: "string"}, "password": {Type: "string"}, "username": {Type: "string", Description: "The email (OAuth2 form field name)."},
	}}
	return huma.Operation{OperationID: "login", Method: "POST", Path: "/auth/login", Tags: []string{"auth"},
		Summary:          "Sign in with email and password",
		Description:      "Accepts JSON {email, password} or the OAuth2 password form (username, password).",
		SkipValidateBody: true, // the handler decodes and checks both forms itself
		RequestBody: &huma.RequestBody{Required: true, Content: map[string]*huma.MediaType{
			"application/json":                  {Schema: &schema},
			"application/x-www-form-urlencoded": {Schema: &schema},
		}},
	}
}

// handleLogin signs in, within the limits on failed attempts, which count
// by client address (see remote.clientAddr for which address).
func handleLogin(a *auth.Service, trusted []netip.Prefix) func(context.Context, *loginInput) (*tokenOutput, error) {
	return func(ctx context.Context, in *loginInput) (*tokenOutput, error) {
		var email, password string
		mt, _, _ := mime.ParseMediaType(in.ContentType)
		switch mt {
		case "application/x-www-form-urlencoded":
			form, err := url.ParseQuery(string(in.RawBody))
			if err != nil {
				return nil, ferry.Errorf(ferry.Invalid, "malformed form body")
			}
			email, password = form.Get("username"), form.Get("password")
			if email == "" {
				email = form.Get("email")
			}
		case "application/json", "":
			var body loginJSON
			dec := json.NewDecoder(strings.NewReader(string(in.RawBody)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&body); err != nil {
				if fe := ferry.InvalidJSON(in.RawBody, err); fe != nil {
					return nil, fe
				}
				return nil, ferry.Errorf(ferry.Invalid, "body must be JSON {\"email\": …, \"password\": …}")
			}
			email, password = body.Email, body.Password
		default:
			return nil, huma.Error415UnsupportedMediaType(sendJSON(in.ContentType, "application/json", "application/x-www-form-urlencoded"))
		}
		if email == "" {
			return nil, ferry.InvalidField("email", "required")
		}
		if password == "" || len(password) > 1024 {
			return nil, ferry.InvalidField("password", "required, at most 1024 bytes")
		}
		pair, err := a.Login(ctx, email, password, in.remote.clientAddr(trusted))
		if err != nil {
			return nil, err
		}
		return newTokenOutput(pair), nil
	}
}

type refreshInput struct {
	Body struct {
		RefreshToken string `json:"refresh_token" minLength:"1" maxLength:"200"`
	}
}

func handleRefresh(a *auth.Service) func(context.Context, *refreshInput) (*tokenOutput, error) {
	return func(ctx context.Context, in *refreshInput) (*tokenOutput, error) {
		pair, err := a.Refresh(ctx, in.Body.RefreshToken)
		if err != nil {
			return nil, err
		}
		return newTokenOutput(pair), nil
	}
}

func handleLogout(a *auth.Service) func(context.Context, *struct{}) (*struct{}, error) {
	return func(ctx context.Context, _ *struct{}) (*struct{}, error) {
		return nil, a.Logout(ctx, principal(ctx))
	}
}

type apiKeyBody struct {
	ID         string     `json:"id"`
	Name       string     `json:"name"`
	Prefix     string     `json:"prefix" doc:"The start of the secret, to recognise the key."`
	CreatedAt  time.Time  `json:"created_at"`
	ExpiresAt  *time.Time `json:"expires_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	Key        string     `json:"key,omitempty" doc:"The secret. Shown only in the answer to its creation."`
	// The key's own limits, within its user's.
	RateLimitRPM int64 `json:"rate_limit_rpm,omitempty"`
	RateLimitTPM int64 `json:"rate_limit_tpm,omitempty"`
}

func newAPIKeyBody(k *ferry.APIKey) apiKeyBody {
	return apiKeyBody{ID: k.ID, Name: k.Name, Prefix: k.Prefix, CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt, LastUsedAt: k.LastUsedAt,
		RateLimitRPM: k.Limits.RPM, RateLimitTPM: k.Limits.TPM}
}

type createAPIKeyInput struct {
	Body struct {
		Name      string     `json:"name" minLength:"1" maxLength:"100"`
		ExpiresAt *time.Time `json:"expires_at,omitempty" doc:"When the key stops working; never if absent."`
		// A script's share of its user's budget: calls with the key count
		// against both.
		RateLimitRPM int64 `json:"rate_limit_rpm,omitempty" minimum:"0" doc:"Model calls a minute allowed with this key, within its user's limit; absent or 0: only the user's limit."`
		RateLimitTPM int64 `json:"rate_limit_tpm,omitempty" minimum:"0" doc:"Tokens a minute allowed with this key, within its user's limit; absent or 0: only the user's limit."`
	}
}

type apiKeyOutput struct{ Body apiKeyBody }

func handleCreateAPIKey(a *auth.Service) func(context.Context, *createAPIKeyInput) (*apiKeyOutput, error) {
	return func(ctx context.Context, in *createAPIKeyInput) (*apiKeyOutput, error) {
		k, secret, err := a.CreateLimitedAPIKey(ctx, principal(ctx).User.ID, in.Body.Name, in.Body.ExpiresAt,
			ferry.Limits{RPM: in.Body.RateLimitRPM, TPM: in.Body.RateLimitTPM})
		if err != nil {
			return nil, err
		}
		body := newAPIKeyBody(k)
		body.Key = secret
		return &apiKeyOutput{Body: body}, nil
	}
}

type apiKeysOutput struct {
	Body struct {
		Items []apiKeyBody `json:"items"`
	}
}

func handleListAPIKeys(a *auth.Service) func(context.Context, *struct{}) (*apiKeysOutput, error) {
	return func(ctx context.Context, _ *struct{}) (*apiKeysOutput, error) {
		keys, err := a.APIKeys(ctx, principal(ctx).User.ID)
		if err != nil {
			return nil, err
		}
		out := &apiKeysOutput{}
		out.Body.Items = make([]apiKeyBody, len(keys))
		for i, k := range keys {
			out.Body.Items[i] = newAPIKeyBody(k)
		}
		return out, nil
	}
}

type idInput struct {
	ID string `path:"id" maxLength:"64"`
}

func handleDeleteAPIKey(a *auth.Service) func(context.Context, *idInput) (*struct{}, error) {
	return func(ctx context.Context, in *idInput) (*struct{}, error) {
		return nil, a.RevokeAPIKey(ctx, principal(ctx).User.ID, in.ID)
	}
}

// Resolve records where the request came from, for login throttling.
func (in *loginInput) Resolve(ctx huma.Context) []error {
	in.remote.resolve(ctx)
	return nil
}
