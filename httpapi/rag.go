package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/danielgtaylor/huma/v2"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/search"
	"github.com/ferryhq/ferry/store"
)

// defaultRAGTopK is the seed's top_k: how many chunks an answer is given
// when the request does not say.
const defaultRAGTopK = 5

// ragInstructions is the system prompt of a retrieval answer; the
// numbered sources follow it.
const ragInstructions = "Answer the user's question using only the numbered sources below. " +
	"After each statement that uses a source, cite it by its number in square brackets, such as [1], or [1][3] for several. " +
	"If the sources do not hold the answer, say so plainly instead of answering from anything else. " +
	"Answer in the language of the question.\n\nSources:"

// noMatchStopReason is the stop_reason of an answer given without the
// model because nothing in the collection matched.
const noMatchStopReason = "no_match"

// ragInput is POST /rag/query: the seed's RAGRequest, plus model,
// conversation_id and mode.
type ragInput struct {
	Body struct {
		Question       string `json:"question" minLength:"1" maxLength:"200000" doc:"The question; the collection is searched for it and the answer is drawn from what is found."`
		Collection     string `json:"collection,omitempty" maxLength:"64" doc:"The collection to search; default: default."`
		TopK           int    `json:"top_k,omitempty" minimum:"1" maximum:"50" doc:"How many chunks the answer is given; default 5."`
		Model          string `json:"model,omitempty" maxLength:"200" doc:"provider/model or a bare name, as in /ai/chat/stream; default FERRY_DEFAULT_MODEL."`
		ConversationID string `json:"conversation_id,omitempty" maxLength:"64" doc:"Continue this conversation; its earlier messages are sent as history. Absent: a new conversation."`
		Mode           string `json:"mode,omitempty" enum:"hybrid,lexical,vector" doc:"How the collection is searched, as in POST /collections/{name}/search; default hybrid."`
		Cache          *bool  `json:"cache,omitempty" doc:"false: neither answer from the answer cache nor store this answer in it. Default true (see FERRY_CACHE_TTL)."`
	}
}

// sourceBody is one numbered source of an answer: the seed's {title,
// score} and what a citation needs.
type sourceBody struct {
	N          int     `json:"n" doc:"The source's number; the answer cites it as [n]."`
	Title      string  `json:"title"`
	Score      float64 `json:"score"`
	DocumentID string  `json:"document_id"`
	ExternalID string  `json:"external_id"`
	Page       int     `json:"page"`
	LastPage   int     `json:"last_page"`
	ChunkID    int64   `json:"chunk_id"`
	Snippet    string  `json:"snippet"`
}

// sourcesEvent is /rag/query's first event: the seed's {"sources"}, with
// the conversation, message and model of the turn (absent when nothing
// matched and no model was asked).
type sourcesEvent struct {
	Sources        []sourceBody `json:"sources"`
	ConversationID string       `json:"conversation_id,omitempty"`
	MessageID      string       `json:"message_id,omitempty"`
	Model          string       `json:"model,omitempty"`
}

// ragDoneEvent is /rag/query's last event: the seed's {"done": true},
// with the sources the answer cited.
type ragDoneEvent struct {
	Done       bool         `json:"done"`
	Cited      []sourceBody `json:"cited"`
	StopReason string       `json:"stop_reason,omitempty"`
	Usage      *usageBody   `json:"usage,omitempty"`
}

func ragOperation() huma.Operation {
	return huma.Operation{OperationID: "rag-query", Method: "POST", Path: "/rag/query", Tags: []string{"ai"},
		Summary: "Answer a question from a collection, citing its sources, as server-sent events",
		Description: "The collection is searched for the question; the best top_k chunks are numbered and given to the model, " +
			"which is asked to cite them as [n]. Events: first {\"sources\": [{n, title, score, document_id, external_id, page, " +
			"last_page, chunk_id, snippet}], conversation_id, message_id, model}; then {\"text\": …} per delta; on a failure " +
			"{\"error\": {code, message, status}}; finally {\"done\": true, \"cited\": [the sources the answer cited], usage, stop_reason}. " +
			"When nothing in the collection matches, no model is asked: one text event says so, and done has stop_reason no_match. " +
			"The turn is stored in a conversation with its sources.",
		Responses: map[string]*huma.Response{"200": {Description: "An event stream.",
			Content: map[string]*huma.MediaType{"text/event-stream": {Schema: &huma.Schema{Type: "string"}}}}},
	}
}

// handleRAGQuery searches the collection and streams an answer drawn
// from what it found. Everything that can be refused is refused before
// the first byte: the question, the collection (another user's is
// NotFound), the model and the conversation.
func handleRAGQuery(s *server, c *chat.Service, r *search.Retriever) func(context.Context, *ragInput) (*huma.StreamResponse, error) {
	return func(ctx context.Context, in *ragInput) (*huma.StreamResponse, error) {
		b := in.Body
		if strings.TrimSpace(b.Question) == "" {
			return nil, ferry.InvalidField("question", "must not be empty or only white space")
		}
		collection, topK := b.Collection, b.TopK
		if collection == "" {
			collection = search.DefaultCollection
		}
		if topK == 0 {
			topK = defaultRAGTopK
		}
		p := principal(ctx)
		hits, _, err := retrieve(ctx, r, p.User.ID, collection, b.Question, topK, b.Mode)
		if err != nil {
			return nil, err
		}
		if len(hits) == 0 {
			return s.answerNoMatch(ctx, p, b.Model, b.ConversationID, collection)
		}
		turn, err := c.Prepare(ctx, p, chat.Request{Message: b.Question, SystemPrompt: ragPrompt(hits), Model: b.Model,
			ConversationID: b.ConversationID, Endpoint: "/rag/query", NoCache: b.Cache != nil && !*b.Cache})
		if err != nil {
			return nil, err
		}
		d := &ragDialect{turn: turn, sources: newSources(hits)}
		rows := answerSources(turn, hits)
		return streamed(func(w http.ResponseWriter, r *http.Request) {
			setCacheHeader(w.Header(), turn.Cache)
			s.resumable(w, r, d, turn, func(ctx context.Context, emit func(llm.Delta) error) (*chat.Result, error) {
				// The sources are saved while the model answers, so
				// that nothing is written between the last token and
				// done; they wait for the turn's rows (Sync), whose
				// conversation they belong to.
				saved := make(chan error, 1)
				go func() { saved <- s.saveSources(ctx, rows) }()
				res, err := turn.Stream(ctx, emit)
				if serr := <-saved; serr != nil {
					s.log.ErrorContext(ctx, "saving answer sources", "message_id", turn.AssistantMessageID, "error", serr)
					if err == nil {
						err = errSourcesNotSaved
					}
				}
				return res, err
			})
		}), nil
	}
}

// errSourcesNotSaved is an answer's error when its sources could not be
// written.
var errSourcesNotSaved = ferry.Errorf(ferry.Unavailable, "the answer's sources could not be saved; ask again")

// saveSources writes rows once the turn's own rows are committed. It
// goes on when the client leaves (the turn is stored anyway), for at most
// 30 s.
func (s *server) saveSources(ctx context.Context, rows []store.AnswerSource) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	st := s.svc.Store
	if err := st.Sync(ctx); err != nil {
		return err
	}
	return st.InsertAnswerSources(ctx, rows)
}

// answerNoMatch answers, without asking a model, that nothing in the
// collection matched: an answer from no sources would be invented. The
// model and the conversation are still checked, so a request is refused
// the same way whatever the collection holds. Nothing is stored: no
// model was asked, and there is no answer to keep.
func (s *server) answerNoMatch(ctx context.Context, p *ferry.Principal, model, conversationID, collection string) (*huma.StreamResponse, error) {
	if _, _, err := s.svc.LLM.Resolve(model); err != nil {
		return nil, err
	}
	if conversationID != "" {
		if _, err := s.svc.Store.Conversation(ctx, p.User.ID, conversationID); err != nil {
			return nil, err
		}
	}
	text := fmt.Sprintf("Nothing relevant to this question was found in the collection %q, so there is nothing to answer from. "+
		"Add documents that cover it, or ask in other words.", collection)
	return streamed(func(w http.ResponseWriter, r *http.Request) {
		s.stream(w, r, &ragDialect{sources: []sourceBody{}}, func(ctx context.Context, emit func(llm.Delta) error) (*chat.Result, error) {
			if err := emit(llm.Delta{Text: text}); err != nil {
				return nil, err
			}
			return &chat.Result{Text: text, Status: ferry.StatusComplete, StopReason: noMatchStopReason}, nil
		})
	}), nil
}

// ragPrompt is the system prompt that gives the model hits as numbered
// sources: each one's number, title and pages, then its text.
func ragPrompt(hits []search.Hit) string {
	var b strings.Builder
	b.WriteString(ragInstructions)
	for i, h := range hits {
		title := h.Title
		if title == "" {
			title = "(untitled)"
		}
		pages := fmt.Sprintf("page %d", h.Page)
		if h.LastPage > h.Page {
			pages = fmt.Sprintf("pages %d-%d", h.Page, h.LastPage)
		}
		fmt.Fprintf(&b, "\n\n[%d] %s (%s)\n%s", i+1, title, pages, strings.TrimSpace(h.Text))
	}
	return b.String()
}

// newSources numbers hits from 1, as ragPrompt does.
func newSources(hits []search.Hit) []sourceBody {
	out := make([]sourceBody, len(hits))
	for i, h := range hits {
		out[i] = sourceBody{N: i + 1, Title: h.Title, Score: h.Score, DocumentID: h.DocumentID, ExternalID: h.ExternalID,
			Page: h.Page, LastPage: h.LastPage, ChunkID: h.ChunkID, Snippet: h.Snippet}
	}
	return out
}

// newSourceBody is a stored source as the rag stream showed it.
func newSourceBody(a store.AnswerSource) sourceBody {
	return sourceBody{N: a.N, Title: a.Title, Score: a.Score, DocumentID: a.DocumentID, ExternalID: a.ExternalID,
		Page: a.Page, LastPage: a.LastPage, ChunkID: a.ChunkID, Snippet: a.Snippet}
}

// answerSources are the rows that keep hits with turn's answer.
func answerSources(turn *chat.Turn, hits []search.Hit) []store.AnswerSource {
	rows := make([]store.AnswerSource, len(hits))
	for i, h := range hits {
		rows[i] = store.AnswerSource{MessageID: turn.AssistantMessageID, ConversationID: turn.ConversationID, N: i + 1,
			ChunkID: h.ChunkID, DocumentID: h.DocumentID, ExternalID: h.ExternalID, Title: h.Title,
			Page: h.Page, LastPage: h.LastPage, Snippet: h.Snippet, Score: h.Score}
	}
	return rows
}

// citationRE matches a citation: one number or several, separated by
// commas, in square brackets (full-width ones too, as models answering in
// Chinese write them).
var citationRE = regexp.MustCompile(`[\[【]\s*(\d{1,4}(?:\s*[,，、]\s*\d{1,4})*)\s*[\]】]`)

// citedNumbers returns the numbers from 1 to n that text cites, in
// increasing order, each once. Numbers outside 1..n are not sources and
// are left out.
func citedNumbers(text string, n int) []int {
	seen := make([]bool, n+1)
	for _, m := range citationRE.FindAllStringSubmatch(text, -1) {
		for _, f := range strings.FieldsFunc(m[1], func(r rune) bool { return r == ',' || r == '，' || r == '、' || unicode.IsSpace(r) }) {
			if k, err := strconv.Atoi(f); err == nil && k >= 1 && k <= n {
				seen[k] = true
			}
		}
	}
	var out []int
	for k := 1; k <= n; k++ {
		if seen[k] {
			out = append(out, k)
		}
	}
	return out
}

// ragDialect is /rag/query's event stream, the seed's: {"sources"} first,
// {"text"} per delta, on a failure {"error"}, and last {"done": true}
// with the sources the answer cited. Every event has an id. The sources
// event goes with the first delta, not before, so that an upstream that
// fails before answering still gets its own status.
type ragDialect struct {
	turn    *chat.Turn // nil: answered without a model
	sources []sourceBody
	answer  strings.Builder // the text so far, for its citations
	sse     sseFrames
}

func (d *ragDialect) header(h http.Header) { setSSEHeaders(h) }
func (d *ragDialect) keepalive() []byte    { return sseKeepalive }
func (d *ragDialect) errors() errorShape   { return problemShape{} }

func (d *ragDialect) open(b []byte) []byte {
	ev := sourcesEvent{Sources: d.sources}
	if t := d.turn; t != nil {
		ev.ConversationID, ev.MessageID, ev.Model = t.ConversationID, t.AssistantMessageID, chat.RoutedName(t.Provider, t.Model)
	}
	return d.sse.event(b, ev)
}

func (d *ragDialect) text(b []byte, delta llm.Delta, first bool) []byte {
	if first {
		b = d.open(b)
	}
	d.answer.WriteString(delta.Text)
	return seedText.data(d.sse.nextID(b), delta.Text)
}

// cited is the sources the answer so far cites.
func (d *ragDialect) cited() []sourceBody {
	out := []sourceBody{}
	for _, k := range citedNumbers(d.answer.String(), len(d.sources)) {
		out = append(out, d.sources[k-1])
	}
	return out
}

func (d *ragDialect) fail(b []byte, fe *ferry.Error, started bool) []byte {
	if !started {
		b = d.open(b)
	}
	b = d.sse.event(b, errorEvent{Error: errorBody{Code: fe.Code, Message: fe.Message, Status: statusOf[fe.Code]}})
	return d.sse.event(b, ragDoneEvent{Done: true, Cited: d.cited()})
}

func (d *ragDialect) done(b []byte, res *chat.Result, started bool) []byte {
	if !started {
		b = d.open(b)
	}
	ev := ragDoneEvent{Done: true, Cited: d.cited(), StopReason: res.StopReason}
	if d.turn != nil {
		ev.Usage = &usageBody{InputTokens: res.Usage.InputTokens, OutputTokens: res.Usage.OutputTokens}
	}
	return d.sse.event(b, ev)
}
