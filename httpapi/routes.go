package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/danielgtaylor/huma/v2"

	"github.com/ferryhq/ferry/auth"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/store"
)

// Services are what the handlers are built from.
type Services struct {
	Store *store.Store
	Auth  *auth.Service
	Chat  *chat.Service
	LLM   *llm.Router

	// OllamaURL is OLLAMA_BASE_URL, which /ollama/* proxies to, through
	// HTTPClient (nil: http.DefaultClient). UpstreamTimeout bounds one model
	// call of /ollama/* and /v1/* (FERRY_UPSTREAM_TIMEOUT; 0: 10 minutes).
	OllamaURL       string
	HTTPClient      *http.Client
	UpstreamTimeout time.Duration
}

// Security requirements an operation can declare; authenticate enforces them.
var (
	authenticated = []map[string][]string{{"bearer": {}}, {"oauth2": {}}}
)

// addRoutes is the whole API in one place.
func addRoutes(s *server, mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/docs", http.StatusFound)
	})
	register(s, huma.Operation{OperationID: "healthz", Method: "GET", Path: "/healthz", Tags: []string{"health"},
		Summary: "The process is alive"}, handleHealthz())
	register(s, huma.Operation{OperationID: "readyz", Method: "GET", Path: "/readyz", Tags: []string{"health"},
		Summary: "The database answers (503 when it does not)"}, handleReadyz(s.svc.Store))

	a := s.svc.Auth
	register(s, huma.Operation{OperationID: "register", Method: "POST", Path: "/auth/register", Tags: []string{"auth"},
		Summary: "Create an account", DefaultStatus: http.StatusCreated}, handleRegister(a))
	register(s, loginOperation(), handleLogin(a))
	register(s, huma.Operation{OperationID: "refresh", Method: "POST", Path: "/auth/refresh", Tags: []string{"auth"},
		Summary: "Exchange a refresh token for a new token pair"}, handleRefresh(a))
	register(s, huma.Operation{OperationID: "logout", Method: "POST", Path: "/auth/logout", Tags: []string{"auth"},
		Summary: "Sign out of this session", Security: authenticated, DefaultStatus: http.StatusNoContent}, handleLogout(a))
	register(s, huma.Operation{OperationID: "create-api-key", Method: "POST", Path: "/auth/api-keys", Tags: []string{"auth"},
		Summary: "Create an API key (the secret is shown once)", Security: authenticated, DefaultStatus: http.StatusCreated}, handleCreateAPIKey(a))
	register(s, huma.Operation{OperationID: "list-api-keys", Method: "GET", Path: "/auth/api-keys", Tags: []string{"auth"},
		Summary: "List your API keys", Security: authenticated}, handleListAPIKeys(a))
	register(s, huma.Operation{OperationID: "delete-api-key", Method: "DELETE", Path: "/auth/api-keys/{id}", Tags: []string{"auth"},
		Summary: "Revoke an API key", Security: authenticated, DefaultStatus: http.StatusNoContent}, handleDeleteAPIKey(a))

	register(s, huma.Operation{OperationID: "get-me", Method: "GET", Path: "/users/me", Tags: []string{"users"},
		Summary: "Your account", Security: authenticated}, handleGetMe())
	register(s, huma.Operation{OperationID: "update-me", Method: "PATCH", Path: "/users/me", Tags: []string{"users"},
		Summary: "Change your name or password", Security: authenticated}, handleUpdateMe(a))
	register(s, huma.Operation{OperationID: "delete-me", Method: "DELETE", Path: "/users/me", Tags: []string{"users"},
		Summary: "Delete your account and everything in it", Security: authenticated, DefaultStatus: http.StatusNoContent}, handleDeleteMe(a))
	register(s, huma.Operation{OperationID: "list-users", Method: "GET", Path: "/users", Tags: []string{"admin"},
		Summary: "List users (admin)", Security: authenticated}, admin(handleListUsers(a)))
	register(s, huma.Operation{OperationID: "get-user", Method: "GET", Path: "/users/{id}", Tags: []string{"admin"},
		Summary: "Get a user (admin)", Security: authenticated}, admin(handleGetUser(a)))
	register(s, huma.Operation{OperationID: "update-user", Method: "PATCH", Path: "/users/{id}", Tags: []string{"admin"},
		Summary: "Change a user's name, role or disabled flag (admin)", Security: authenticated}, admin(handleUpdateUser(a)))
	register(s, huma.Operation{OperationID: "delete-user", Method: "DELETE", Path: "/users/{id}", Tags: []string{"admin"},
		Summary: "Delete a user (admin)", Security: authenticated, DefaultStatus: http.StatusNoContent}, admin(handleDeleteUser(a)))

	c := s.svc.Chat
	register(s, huma.Operation{OperationID: "models", Method: "GET", Path: "/ai/models", Tags: []string{"ai"},
		Summary: "Models the configured providers offer", Security: authenticated}, handleModels(s.svc.LLM))
	register(s, chatStreamOperation(), handleChatStream(s, c))
	register(s, huma.Operation{OperationID: "chat", Method: "POST", Path: "/ai/chat", Tags: []string{"ai"},
		Summary: "Chat, answered in one piece", Security: authenticated}, handleChat(c))

	register(s, huma.Operation{OperationID: "list-conversations", Method: "GET", Path: "/conversations", Tags: []string{"conversations"},
		Summary: "Your conversations, most recent first", Security: authenticated}, handleListConversations(c))
	register(s, huma.Operation{OperationID: "create-conversation", Method: "POST", Path: "/conversations", Tags: []string{"conversations"},
		Summary: "Start a conversation", Security: authenticated, DefaultStatus: http.StatusCreated}, handleCreateConversation(c))
	register(s, huma.Operation{OperationID: "get-conversation", Method: "GET", Path: "/conversations/{id}", Tags: []string{"conversations"},
		Summary: "A conversation with its messages", Security: authenticated}, handleGetConversation(c))
	register(s, huma.Operation{OperationID: "rename-conversation", Method: "PATCH", Path: "/conversations/{id}", Tags: []string{"conversations"},
		Summary: "Rename a conversation", Security: authenticated}, handleRenameConversation(c))
	register(s, huma.Operation{OperationID: "delete-conversation", Method: "DELETE", Path: "/conversations/{id}", Tags: []string{"conversations"},
		Summary: "Delete a conversation and its messages", Security: authenticated, DefaultStatus: http.StatusNoContent}, handleDeleteConversation(c))

	// OpenAI's Chat Completions API, for OpenAI's SDKs; errors in OpenAI's shape.
	register(s, chatCompletionsOperation(s.api.OpenAPI().Components.Schemas), handleChatCompletions(s))
	register(s, openAIOperation(huma.Operation{OperationID: "openai-models", Method: "GET", Path: "/v1/models",
		Summary: "Models the configured providers offer, in OpenAI's list format"}), handleOpenAIModels(s.svc.LLM))

	// Ollama's native API, proxied to OLLAMA_BASE_URL.
	o := newOllamaProxy(s.svc)
	register(s, ollamaGenerateOperation(), handleOllamaGenerate(s, o, "/ollama/generate", "/api/generate"))
	register(s, ollamaChatOperation(), handleOllamaGenerate(s, o, "/ollama/chat", "/api/chat"))
	register(s, ollamaTagsOperation(), handleOllamaTags(s, o))
}

// register adds op to the API with the server's body limit, and routes every
// error the handler returns through problem, so no error reaches the client
// unmapped.
func register[I, O any](s *server, op huma.Operation, h func(context.Context, *I) (*O, error)) {
	if op.MaxBodyBytes == 0 {
		op.MaxBodyBytes = s.opts.MaxBodyBytes
	}
	huma.Register(s.api, op, func(ctx context.Context, in *I) (*O, error) {
		out, err := h(ctx, in)
		if err != nil {
			return nil, s.problem(ctx, err)
		}
		return out, nil
	})
}
