package httpapi

import (
	"context"
	"net/http"

	"github.com/danielgtaylor/huma/v2"

	"github.com/ferryhq/ferry/auth"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/eventlog"
	"github.com/ferryhq/ferry/ingest"
	"github.com/ferryhq/ferry/jobs"
	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/llm/ollama"
	"github.com/ferryhq/ferry/search"
	"github.com/ferryhq/ferry/store"
)

// Services are what the handlers are built from.
type Services struct {
	Store *store.Store
	Auth  *auth.Service
	Chat  *chat.Service
	LLM   *llm.Router

	// Ollama serves /ollama/*, Ollama's own API passed through; its calls
	// still enter through Chat.
	Ollama *ollama.Provider

	// Ingest keeps collections and takes documents into them
	// (/collections/*).
	Ingest *ingest.Service

	// Retriever searches the collections (/collections/{name}/search,
	// /rag/query); nil: lexical search over Ingest's index.
	Retriever *search.Retriever

	// Jobs runs background chat jobs (/ai/jobs); nil: those answer 503.
	Jobs *jobs.Service

	// PDF reads uploaded PDFs (/analyze/pdf); nil: that endpoint answers
	// 503. run makes one that starts PDFium on first use.
	PDF PDFReader

	// Logs keep the events of the answers being generated, for clients
	// that come back (GET /conversations/{id}/stream); nil: in memory.
	Logs *eventlog.Logs
}

// authenticated is the security requirement of every operation outside
// public; authenticate enforces it.
var authenticated = []map[string][]string{{"bearer": {}}, {"oauth2": {}}}

// public are the operations anyone may call. Every other operation requires
// a signed-in caller: register adds the requirement, so a new route is
// denied by default.
var public = map[string]bool{
	"healthz": true, "readyz": true, "register": true, "login": true, "refresh": true,
}

// addRoutes is the whole API in one place.
func addRoutes(s *server, mux *http.ServeMux) {
	// The web page and its files, served from the binary (web.go).
	mux.HandleFunc("GET /{$}", serveWeb)
	mux.HandleFunc("GET /web/{version}/{name}", serveWebAsset)
	// The API reference, served from the binary (docs.go).
	mux.HandleFunc("GET /docs", serveDocs)
	mux.HandleFunc("GET /docs/assets/{name}", serveDocsAsset)
	register(s, huma.Operation{OperationID: "healthz", Method: "GET", Path: "/healthz", Tags: []string{"health"},
		Summary: "The process is alive"}, handleHealthz())
	register(s, huma.Operation{OperationID: "readyz", Method: "GET", Path: "/readyz", Tags: []string{"health"},
		Summary: "The database answers (503 when it does not)"}, handleReadyz(s.svc.Store, s.opts.Stopping))

	a := s.svc.Auth
	register(s, huma.Operation{OperationID: "register", Method: "POST", Path: "/auth/register", Tags: []string{"auth"},
		Summary: "Create an account", DefaultStatus: http.StatusCreated}, handleRegister(a, s.opts.TrustedProxies))
	register(s, loginOperation(), handleLogin(a, s.opts.TrustedProxies))
	register(s, huma.Operation{OperationID: "refresh", Method: "POST", Path: "/auth/refresh", Tags: []string{"auth"},
		Summary: "Exchange a refresh token for a new token pair"}, handleRefresh(a))
	register(s, huma.Operation{OperationID: "logout", Method: "POST", Path: "/auth/logout", Tags: []string{"auth"},
		Summary: "Sign out of this session", DefaultStatus: http.StatusNoContent}, handleLogout(a))
	register(s, huma.Operation{OperationID: "create-api-key", Method: "POST", Path: "/auth/api-keys", Tags: []string{"auth"},
		Summary: "Create an API key (the secret is shown once)", DefaultStatus: http.StatusCreated}, handleCreateAPIKey(a))
	register(s, huma.Operation{OperationID: "list-api-keys", Method: "GET", Path: "/auth/api-keys", Tags: []string{"auth"},
		Summary: "List your API keys"}, handleListAPIKeys(a))
	register(s, huma.Operation{OperationID: "delete-api-key", Method: "DELETE", Path: "/auth/api-keys/{id}", Tags: []string{"auth"},
		Summary: "Revoke an API key", DefaultStatus: http.StatusNoContent}, handleDeleteAPIKey(a))

	register(s, huma.Operation{OperationID: "get-me", Method: "GET", Path: "/users/me", Tags: []string{"users"},
		Summary: "Your account"}, handleGetMe())
	register(s, huma.Operation{OperationID: "update-me", Method: "PATCH", Path: "/users/me", Tags: []string{"users"},
		Summary: "Change your name or password"}, handleUpdateMe(a))
	register(s, huma.Operation{OperationID: "delete-me", Method: "DELETE", Path: "/users/me", Tags: []string{"users"},
		Summary: "Delete your account and everything in it", DefaultStatus: http.StatusNoContent}, handleDeleteMe(a, s.revokeUser))
	register(s, huma.Operation{OperationID: "list-users", Method: "GET", Path: "/users", Tags: []string{"admin"},
		Summary: "List users (admin)"}, admin(handleListUsers(a)))
	register(s, huma.Operation{OperationID: "get-user", Method: "GET", Path: "/users/{id}", Tags: []string{"admin"},
		Summary: "Get a user (admin)"}, admin(handleGetUser(a)))
	register(s, huma.Operation{OperationID: "update-user", Method: "PATCH", Path: "/users/{id}", Tags: []string{"admin"},
		Summary: "Change a user's name, role, disabled flag or rate limits (admin)"}, admin(handleUpdateUser(a, s.revokeUser)))
	register(s, huma.Operation{OperationID: "delete-user", Method: "DELETE", Path: "/users/{id}", Tags: []string{"admin"},
		Summary: "Delete a user (admin)", DefaultStatus: http.StatusNoContent}, admin(handleDeleteUser(a, s.revokeUser)))
	register(s, huma.Operation{OperationID: "unblock-user", Method: "POST", Path: "/users/{id}/unblock", Tags: []string{"admin"},
		Summary: "Lift the sign-in blocks on a user's account (admin)", DefaultStatus: http.StatusNoContent}, admin(handleUnblockUser(a)))
	register(s, huma.Operation{OperationID: "admin-usage", Method: "GET", Path: "/admin/usage", Tags: []string{"admin"},
		Summary: "The usage log summed per user and model, optionally between since and until (admin)"}, admin(handleUsage(s.svc.Store)))

	c := s.svc.Chat
	register(s, huma.Operation{OperationID: "models", Method: "GET", Path: "/ai/models", Tags: []string{"ai"},
		Summary: "Models the configured providers offer"}, handleModels(s.svc.LLM))
	register(s, chatStreamOperation(), handleChatStream(s, c))
	register(s, huma.Operation{OperationID: "chat", Method: "POST", Path: "/ai/chat", Tags: []string{"ai"},
		Summary: "Chat, answered in one piece"}, handleChat(c))
	register(s, analyzeOperation(s.opts.MaxUploadBytes), handleAnalyzePDF(s, c))
	js := s.svc.Jobs
	register(s, huma.Operation{OperationID: "submit-job", Method: "POST", Path: "/ai/jobs", Tags: []string{"ai"},
		DefaultStatus: http.StatusAccepted, Summary: "Chat in the background: queue an /ai/chat request as a job (202), then poll it"}, needJobs(js, handleSubmitJob(js)))
	register(s, huma.Operation{OperationID: "get-job", Method: "GET", Path: "/ai/jobs/{id}", Tags: []string{"ai"},
		Summary: "A background job: queued, running, succeeded (with the answer), failed (with the reason) or cancelled"},
		needJobs(js, handleGetJob(js)))
	register(s, huma.Operation{OperationID: "cancel-job", Method: "DELETE", Path: "/ai/jobs/{id}", Tags: []string{"ai"},
		Summary: "Cancel a queued or running job (a running one's model call ends); 409 once it has finished"},
		needJobs(js, handleCancelJob(js)))

	register(s, huma.Operation{OperationID: "list-conversations", Method: "GET", Path: "/conversations", Tags: []string{"conversations"},
		Summary: "Your conversations, most recent first"}, handleListConversations(c))
	register(s, huma.Operation{OperationID: "create-conversation", Method: "POST", Path: "/conversations", Tags: []string{"conversations"},
		Summary: "Start a conversation", DefaultStatus: http.StatusCreated}, handleCreateConversation(c))
	register(s, huma.Operation{OperationID: "get-conversation", Method: "GET", Path: "/conversations/{id}", Tags: []string{"conversations"},
		Summary: "A conversation with its messages"}, handleGetConversation(c))
	register(s, huma.Operation{OperationID: "rename-conversation", Method: "PATCH", Path: "/conversations/{id}", Tags: []string{"conversations"},
		Summary: "Rename a conversation"}, handleRenameConversation(c))
	register(s, huma.Operation{OperationID: "delete-conversation", Method: "DELETE", Path: "/conversations/{id}", Tags: []string{"conversations"},
		Summary: "Delete a conversation and its messages", DefaultStatus: http.StatusNoContent}, handleDeleteConversation(c))
	register(s, resumeOperation(), handleResumeStream(s))
	register(s, stopOperation(), handleStopAnswer(s))

	g := s.svc.Ingest
	register(s, huma.Operation{OperationID: "create-collection", Method: "POST", Path: "/collections", Tags: []string{"collections"},
		Summary: "Create a collection", DefaultStatus: http.StatusCreated}, needIngest(g, handleCreateCollection(g)))
	register(s, huma.Operation{OperationID: "list-collections", Method: "GET", Path: "/collections", Tags: []string{"collections"},
		Summary: "Your collections (default always among them)"}, needIngest(g, handleListCollections(g)))
	register(s, huma.Operation{OperationID: "get-collection", Method: "GET", Path: "/collections/{name}", Tags: []string{"collections"},
		Summary: "A collection with its documents counted by status"}, needIngest(g, handleGetCollection(g)))
	register(s, huma.Operation{OperationID: "delete-collection", Method: "DELETE", Path: "/collections/{name}", Tags: []string{"collections"},
		Summary: "Delete a collection and its documents", DefaultStatus: http.StatusNoContent}, needIngest(g, handleDeleteCollection(g)))
	register(s, addDocumentsOperation(s.opts.MaxUploadBytes), needIngest(g, handleAddDocuments(g)))
	register(s, huma.Operation{OperationID: "list-documents", Method: "GET", Path: "/collections/{name}/documents", Tags: []string{"collections"},
		Summary: "A collection's documents with their status, pages and chunks, oldest first"}, needIngest(g, handleListDocuments(g)))
	register(s, huma.Operation{OperationID: "get-document", Method: "GET", Path: "/collections/{name}/documents/{id}", Tags: []string{"collections"},
		Summary: "A document's status, pages, chunks and error"}, needIngest(g, handleGetDocument(g)))
	register(s, documentEventsOperation(), needIngest(g, handleDocumentEvents(s, g)))
	register(s, huma.Operation{OperationID: "delete-document", Method: "DELETE", Path: "/collections/{name}/documents/{id}", Tags: []string{"collections"},
		Summary: "Delete a document; it leaves search at once", DefaultStatus: http.StatusNoContent}, needIngest(g, handleDeleteDocument(g)))
	r := s.retriever()
	register(s, huma.Operation{OperationID: "search-collection", Method: "POST", Path: "/collections/{name}/search", Tags: []string{"collections"},
		Summary: "Search a collection: its best chunks with their document, page, snippet and score"}, needIngest(g, handleSearch(r)))
	register(s, ragOperation(), needIngest(g, handleRAGQuery(s, c, r)))

	// OpenAI's Chat Completions API, for OpenAI's SDKs; errors in OpenAI's shape.
	register(s, chatCompletionsOperation(s.api.OpenAPI().Components.Schemas), handleChatCompletions(s))
	register(s, openAIOperation(huma.Operation{OperationID: "openai-models", Method: "GET", Path: "/v1/models",
		Summary: "Models the configured providers offer, in OpenAI's list format"}), handleOpenAIModels(s.svc.LLM))
	// Anthropic's Messages API, for Anthropic's SDKs (x-api-key or bearer);
	// errors in Anthropic's shape.
	register(s, messagesOperation(s.api.OpenAPI().Components.Schemas, s.opts.MaxUploadBytes), handleMessages(s))
	register(s, countTokensOperation(s.api.OpenAPI().Components.Schemas, s.opts.MaxUploadBytes), handleCountTokens(s))

	// Ollama's native API, proxied to OLLAMA_BASE_URL: the seed's paths, and
	// Ollama's own under /ollama/api/ for its clients (host ".../ollama").
	// Model calls pass the funnel; lookups only read; managing models is
	// refused. Errors in Ollama's {"error"} shape.
	o := s.svc.Ollama
	register(s, ollamaGenerateOperation("ollama-generate", "/ollama/generate"), handleOllamaGenerate(s, "/ollama/generate", "/api/generate"))
	register(s, ollamaChatOperation("ollama-chat", "/ollama/chat"), handleOllamaGenerate(s, "/ollama/chat", "/api/chat"))
	register(s, ollamaLookupOperation("ollama-tags", "GET", "/ollama/tags", "Ollama's models (its /api/tags)"), handleOllamaLookup(o, "/api/tags"))
	register(s, ollamaGenerateOperation("ollama-api-generate", "/ollama/api/generate"), handleOllamaGenerate(s, "/ollama/api/generate", "/api/generate"))
	register(s, ollamaChatOperation("ollama-api-chat", "/ollama/api/chat"), handleOllamaGenerate(s, "/ollama/api/chat", "/api/chat"))
	register(s, ollamaEmbedOperation(), handleOllamaGenerate(s, "/ollama/api/embed", ollama.PathEmbed))
	register(s, ollamaLookupOperation("ollama-api-tags", "GET", "/ollama/api/tags", "Ollama's models (its /api/tags)"), handleOllamaLookup(o, "/api/tags"))
	register(s, ollamaLookupOperation("ollama-api-ps", "GET", "/ollama/api/ps", "Ollama's models loaded in memory (its /api/ps)"), handleOllamaLookup(o, "/api/ps"))
	register(s, ollamaLookupOperation("ollama-api-version", "GET", "/ollama/api/version", "Ollama's version (its /api/version)"), handleOllamaLookup(o, "/api/version"))
	register(s, ollamaLookupOperation("ollama-api-show", "POST", "/ollama/api/show", "One Ollama model's details (its /api/show)"), handleOllamaShow(o))
	for _, r := range []struct{ id, method, path string }{
		{"ollama-api-pull", "POST", "/ollama/api/pull"}, {"ollama-api-push", "POST", "/ollama/api/push"},
		{"ollama-api-create", "POST", "/ollama/api/create"}, {"ollama-api-copy", "POST", "/ollama/api/copy"},
		{"ollama-api-delete", "DELETE", "/ollama/api/delete"},
		{"ollama-api-blob-head", "HEAD", "/ollama/api/blobs/{digest}"}, {"ollama-api-blob", "POST", "/ollama/api/blobs/{digest}"},
	} {
		register(s, ollamaRefusedOperation(r.id, r.method, r.path), refuseOllama(errOllamaManage))
	}
	register(s, ollamaRefusedOperation("ollama-api-embeddings", "POST", "/ollama/api/embeddings"), refuseOllama(errOllamaEmbeddings))
}

// register adds op to the API with the server's body limit and body read
// timeout, requiring a signed-in caller unless op is public (by the
// bearer token, or by what op's own Security names), and routes
// every error the handler returns through problem, so no error reaches the
// client unmapped; the operation's error shape (withErrors) words it.
func register[I, O any](s *server, op huma.Operation, h func(context.Context, *I) (*O, error)) {
	if op.MaxBodyBytes == 0 {
		op.MaxBodyBytes = s.opts.MaxBodyBytes
	}
	if op.BodyReadTimeout == 0 {
		// huma's own default is 5 s, and only for typed bodies.
		op.BodyReadTimeout = s.opts.BodyReadTimeout
	}
	if !public[op.OperationID] && len(op.Security) == 0 {
		op.Security = authenticated
	}
	huma.Register(s.api, op, func(ctx context.Context, in *I) (*O, error) {
		out, err := h(ctx, in)
		if err != nil {
			return nil, s.problem(ctx, err)
		}
		return out, nil
	})
}
