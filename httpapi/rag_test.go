package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/auth"
	"github.com/ferryhq/ferry/chat"
	"github.com/ferryhq/ferry/embed"
	"github.com/ferryhq/ferry/httpapi"
	"github.com/ferryhq/ferry/ingest"
	"github.com/ferryhq/ferry/limit"
	"github.com/ferryhq/ferry/llm"
	"github.com/ferryhq/ferry/llm/llmtest"
	"github.com/ferryhq/ferry/llm/openai"
	"github.com/ferryhq/ferry/search"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/storetest"
)

// SciFact abstracts the tests index (BEIR SciFact ids), and a question of
// SciFact's test set whose relevant abstract is prion: test query 5.
const (
	prion      = "13734012" // abnormal prion protein in human appendixes
	nanotech   = "31715818" // nanotechnologies to track stem cells
	rareVar    = "14717500" // rare variants and genome-wide associations
	underwt    = "1606628"  // global prevalence of childhood underweight
	folicAcid  = "5152028"  // folic acid and endothelial function
	prionQuery = "1/2000 in UK have abnormal PrP positivity."
)

// scifactAbstract is one abstract of the shared SciFact corpus.
type scifactAbstract struct {
	ID    string `json:"_id"`
	Title string `json:"title"`
	Text  string `json:"text"`
}

// scifactSample reads the abstracts the tests use from the shared corpus,
// once.
var scifactSample = sync.OnceValues(func() (map[string]scifactAbstract, error) {
	f, err := os.Open(filepath.Join("..", "..", "shared", "data", "scifact", "corpus.jsonl"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	want := []string{prion, nanotech, rareVar, underwt, folicAcid}
	out := map[string]scifactAbstract{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var a scifactAbstract
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			return nil, err
		}
		if slices.Contains(want, a.ID) {
			out[a.ID] = a
		}
	}
	return out, sc.Err()
})

// ragEnv is the API over real TCP with a search index, chat through the
// OpenAI fake, and two users, a and b. Ingestion is not started: the tests
// index documents directly, so that what is searchable is deterministic.
type ragEnv struct {
	url      string
	fake     *llmtest.Server
	store    *store.Store
	ix       *search.Index
	ret      *search.Retriever // the API's; with an embedder when asked
	a, b     string            // access tokens
	aID, bID string
}

func newRAGEnv(t *testing.T, engine string, embedder bool) *ragEnv {
	t.Helper()
	ctx := context.Background()
	db := storetest.Database(t, engine)
	st, err := store.Open(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	tokens, err := auth.NewTokens([]byte(strings.Repeat("k", auth.MinSecretKeyLen)))
	if err != nil {
		t.Fatal(err)
	}
	authSvc := auth.NewService(st, tokens, limit.NewMemoryFailures(limit.Policy{}, nil),
		auth.ServiceOptions{Hasher: auth.Hasher{Params: auth.TestPasswordParams}})
	fake := llmtest.Start(t)
	hc := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(hc.CloseIdleConnections)
	router, err := llm.NewRouter("", openai.New(openai.Config{APIKey: "sk-test", BaseURL: fake.OpenAIURL(), HTTPClient: hc}))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(io.Discard, nil))
	ix := search.New(st)
	ing, err := ingest.New(ctx, st, db, ix, nil, ingest.Options{}, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ing.Stop(context.Background()) })
	var emb search.Embedder
	if embedder {
		fake.SetEmbedding(llmtest.HashedWords(64))
		client, err := embed.New(embed.Config{Model: "openai/text-embedding-3-small", OpenAIAPIKey: "sk-test",
			OpenAIBaseURL: fake.OpenAIURL(), HTTPClient: hc})
		if err != nil {
			t.Fatal(err)
		}
		emb = client
	}
	ret := search.NewRetriever(ix, emb, search.Fusion{}, log)
	h := httpapi.NewServer(log, httpapi.Options{Version: "test", MaxBodyBytes: 1 << 20, Draining: context.Background()},
		httpapi.Services{Store: st, Auth: authSvc, Chat: chat.NewService(st, router, chat.Options{SystemPrompt: "be brief"}),
			LLM: router, Ingest: ing, Retriever: ret})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	t.Cleanup(fake.Close) // before srv.Close: a stuck stream fails its test
	e := &ragEnv{url: srv.URL, fake: fake, store: st, ix: ix, ret: ret}
	for _, u := range []struct {
		email     string
		token, id *string
	}{{"a@example.com", &e.a, &e.aID}, {"b@example.com", &e.b, &e.bID}} {
		usr, err := authSvc.CreateUser(ctx, u.email, "password123", "", ferry.RoleUser)
		if err != nil {
			t.Fatal(err)
		}
		pair, err := authSvc.Login(ctx, u.email, "password123", "127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		*u.token, *u.id = pair.AccessToken, usr.ID
	}
	return e
}

// index creates the user's collection (but default) and adds the SciFact
// abstracts with ids to it, each as one page, and returns their document ids by SciFact id.
func (e *ragEnv) index(t *testing.T, userID, collection string, ids ...string) map[string]string {
	t.Helper()
	sample, err := scifactSample()
	if err != nil {
		t.Fatalf("the SciFact corpus must be at ../../shared/data/scifact: %v", err)
	}
	if collection != search.DefaultCollection {
		if _, err := e.ix.CreateCollection(context.Background(), userID, collection); err != nil {
			t.Fatal(err)
		}
	}
	docs := map[string]string{}
	for _, id := range ids {
		a, ok := sample[id]
		if !ok {
			t.Fatalf("abstract %s is not in the corpus", id)
		}
		chunks := search.Split([]search.Page{{Number: 1, Text: a.Text}}, search.ChunkOptions{})
		doc := search.Document{ExternalID: id, Title: a.Title, Status: search.StatusIndexed, Pages: 1}
		// As ingestion does: embed (without an embedder, nothing), add,
		// then store the vectors under the chunks' ids.
		if err := e.ret.EmbedChunks(context.Background(), &doc, chunks); err != nil {
			t.Fatal(err)
		}
		d, err := e.ix.Add(context.Background(), userID, collection, doc, chunks)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.ix.SetEmbeddings(context.Background(), chunks); err != nil {
			t.Fatal(err)
		}
		docs[id] = d.ID
	}
	return docs
}

// post sends body as JSON with the token and returns the status and the
// body.
func (e *ragEnv) post(t *testing.T, path, token string, body any) (int, string) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", e.url+path, strings.NewReader(string(b)))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(out)
}

// searchResult is one result of the search endpoint.
type searchResult struct {
	ChunkID    int64   `json:"chunk_id"`
	DocumentID string  `json:"document_id"`
	ExternalID string  `json:"external_id"`
	Title      string  `json:"title"`
	Page       int     `json:"page"`
	Snippet    string  `json:"snippet"`
	Score      float64 `json:"score"`
}

// TestCollectionSearch searches real SciFact abstracts through the
// endpoint: the relevant abstract comes first with its document id,
// external id, title, page, snippet and score; top_k bounds the results;
// each mode is answered; another user's collection is 404 and their
// default collection does not hold a's documents.
func TestCollectionSearch(t *testing.T) {
	eachRAGEngine(t, func(t *testing.T, e *ragEnv) {
		docs := e.index(t, e.aID, "science", prion, nanotech, rareVar, underwt, folicAcid)
		e.index(t, e.aID, search.DefaultCollection, prion)

		status, body := e.post(t, "/collections/science/search", e.a, map[string]any{"query": "abnormal prion protein appendix", "top_k": 3})
		if status != http.StatusOK {
			t.Fatalf("search: %d %s", status, body)
		}
		var out struct {
			Mode    string         `json:"mode"`
			Results []searchResult `json:"results"`
		}
		if err := json.Unmarshal([]byte(body), &out); err != nil {
			t.Fatal(err)
		}
		if out.Mode != "lexical" {
			t.Errorf("mode = %q, want lexical (hybrid without an embedder)", out.Mode)
		}
		if len(out.Results) == 0 || len(out.Results) > 3 {
			t.Fatalf("got %d results, want 1 to 3: %s", len(out.Results), body)
		}
		top := out.Results[0]
		if top.ExternalID != prion || top.DocumentID != docs[prion] || top.Page != 1 || top.ChunkID == 0 ||
			!strings.Contains(top.Title, "prion") || !strings.Contains(strings.ToLower(top.Snippet), "prion") || top.Score <= 0 {
			t.Errorf("top result = %+v, want the prion abstract %s with its snippet and a score", top, docs[prion])
		}
		for i := 1; i < len(out.Results); i++ {
			if out.Results[i].Score > out.Results[i-1].Score {
				t.Errorf("results not best first: %+v", out.Results)
			}
		}

		for _, mode := range []string{"lexical", "hybrid"} {
			if status, body := e.post(t, "/collections/science/search", e.a, map[string]any{"query": "folic acid", "mode": mode}); status != http.StatusOK ||
				!strings.Contains(body, folicAcid) {
				t.Errorf("mode %s: %d %s, want the folic acid abstract", mode, status, body)
			}
		}
		for _, c := range []struct {
			name, path, token string
			body              any
			status            int
			fragment          string
		}{
			{"vector without an embedder", "/collections/science/search", e.a, map[string]any{"query": "prion", "mode": "vector"}, 400, "embedder"},
			{"unknown mode", "/collections/science/search", e.a, map[string]any{"query": "prion", "mode": "fuzzy"}, 422, "mode"},
			{"empty query", "/collections/science/search", e.a, map[string]any{"query": ""}, 422, "query"},
			{"top_k too large", "/collections/science/search", e.a, map[string]any{"query": "prion", "top_k": 5000}, 422, "top_k"},
			{"another user's collection", "/collections/science/search", e.b, map[string]any{"query": "prion"}, 404, "not found"},
			{"no such collection", "/collections/nothing/search", e.a, map[string]any{"query": "prion"}, 404, "not found"},
			{"signed out", "/collections/science/search", "", map[string]any{"query": "prion"}, 401, ""},
		} {
			status, body := e.post(t, c.path, c.token, c.body)
			if status != c.status || !strings.Contains(body, c.fragment) {
				t.Errorf("%s: %d %s, want %d with %q", c.name, status, body, c.status, c.fragment)
			}
		}
		// b's default collection exists implicitly and is empty: a's
		// documents are not in it.
		if status, body := e.post(t, "/collections/default/search", e.b, map[string]any{"query": "prion"}); status != http.StatusOK ||
			!strings.Contains(body, `"results":[]`) {
			t.Errorf("b's default collection: %d %s, want no results", status, body)
		}
	})
}

// TestCollectionSearchModes searches with an embedder (the fake's
// /v1/embeddings, hashed words): each mode ranks and says so, the prion
// abstract first in each for words of its own (no mode is hybrid), and
// /rag/query takes the mode too.
func TestCollectionSearchModes(t *testing.T) {
	t.Parallel()
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			e := newRAGEnv(t, engine, true)
			docs := e.index(t, e.aID, "science", prion, nanotech, rareVar, underwt, folicAcid)
			for _, mode := range []string{"lexical", "vector", "hybrid", ""} {
				req := map[string]any{"query": "archived appendix samples abnormal prion protein survey", "top_k": 3}
				if mode != "" {
					req["mode"] = mode
				}
				status, body := e.post(t, "/collections/science/search", e.a, req)
				var out struct {
					Mode    string         `json:"mode"`
					Results []searchResult `json:"results"`
				}
				json.Unmarshal([]byte(body), &out)
				want := mode
				if want == "" {
					want = "hybrid"
				}
				if status != http.StatusOK || out.Mode != want || len(out.Results) == 0 || out.Results[0].DocumentID != docs[prion] {
					t.Errorf("mode %q: %d %s, want mode %s with the prion abstract first", mode, status, body, want)
				}
			}
			e.fake.SetScript(llmtest.Script{Deltas: []string{"Yes [1]."}})
			status, evs, raw := e.ragEvents(t, e.a, map[string]any{"question": prionQuery, "collection": "science", "mode": "vector", "top_k": 2})
			if status != http.StatusOK || len(evs[0]["sources"].([]any)) != 2 {
				t.Errorf("rag/query in vector mode: %d %s, want 2 sources", status, raw)
			}
		})
	}
}

// eachRAGEngine runs fn as a parallel subtest per engine, each on a fresh
// ragEnv.
func eachRAGEngine(t *testing.T, fn func(t *testing.T, e *ragEnv)) {
	t.Parallel()
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			t.Parallel()
			fn(t, newRAGEnv(t, engine, false))
		})
	}
}

// ragEvents posts a /rag/query and returns the status and, for a stream,
// its events' data in order.
func (e *ragEnv) ragEvents(t *testing.T, token string, body any) (int, []map[string]any, string) {
	t.Helper()
	status, raw := e.post(t, "/rag/query", token, body)
	if status != http.StatusOK {
		return status, nil, raw
	}
	var evs []map[string]any
	readEvents(t, strings.NewReader(raw), func(ev sseEvent) bool {
		if ev.data != nil {
			evs = append(evs, ev.data)
		}
		return true
	})
	return status, evs, raw
}

// strings of every JSON string in v, in order.
func jsonStrings(v any, out *strings.Builder) {
	switch v := v.(type) {
	case string:
		out.WriteString(v + "\n")
	case []any:
		for _, x := range v {
			jsonStrings(x, out)
		}
	case map[string]any:
		for _, x := range v {
			jsonStrings(x, out)
		}
	}
}

// TestRAGQuery asks about real SciFact abstracts: the sources event comes
// first, numbered, with document id, external id, page and snippet; then
// the model's text deltas; then done listing the sources the answer cited
// ([1] and [2] of the fake's answer, not the uncited ones nor a number
// that is no source). The prompt that reached the upstream numbers the
// sources and asks for [n] citations; the turn is stored with its
// sources; a follow-up in the conversation works; and deleting the
// conversation deletes the sources.
func TestRAGQuery(t *testing.T) {
	eachRAGEngine(t, func(t *testing.T, e *ragEnv) {
		docs := e.index(t, e.aID, search.DefaultCollection, prion, nanotech, rareVar, underwt, folicAcid)
		e.fake.SetScript(llmtest.Script{Deltas: []string{"About 1 in 2,000 people ", "in the UK carried abnormal PrP [1]", ", as other surveys agree [2][9]."}})

		status, evs, raw := e.ragEvents(t, e.a, map[string]any{"question": prionQuery, "top_k": 3})
		if status != http.StatusOK {
			t.Fatalf("rag/query: %d %s", status, raw)
		}
		if len(evs) < 3 {
			t.Fatalf("events: %s", raw)
		}
		first, last := evs[0], evs[len(evs)-1]
		sources, ok := first["sources"].([]any)
		if !ok || len(sources) == 0 || len(sources) > 3 {
			t.Fatalf("first event = %v, want 1 to 3 sources", first)
		}
		s1 := sources[0].(map[string]any)
		if s1["n"] != 1.0 || s1["external_id"] != prion || s1["document_id"] != docs[prion] || s1["page"] != 1.0 ||
			!strings.Contains(s1["title"].(string), "prion") || s1["snippet"] == "" || s1["score"].(float64) <= 0 {
			t.Errorf("source 1 = %v, want the prion abstract numbered 1 with its ids, page, snippet and score", s1)
		}
		for i, s := range sources {
			if s.(map[string]any)["n"] != float64(i+1) {
				t.Errorf("source %d is numbered %v", i, s.(map[string]any)["n"])
			}
		}
		if first["conversation_id"] == "" || first["message_id"] == "" || first["model"] == nil {
			t.Errorf("first event = %v, want the conversation, message and model", first)
		}
		var text strings.Builder
		for _, ev := range evs[1 : len(evs)-1] {
			s, ok := ev["text"].(string)
			if !ok {
				t.Fatalf("between sources and done, only text events: %v", ev)
			}
			text.WriteString(s)
		}
		answer := "About 1 in 2,000 people in the UK carried abnormal PrP [1], as other surveys agree [2][9]."
		if text.String() != answer {
			t.Errorf("text = %q, want %q", text.String(), answer)
		}
		if last["done"] != true {
			t.Fatalf("last event = %v, want done", last)
		}
		cited, _ := last["cited"].([]any)
		var citedN []float64
		for _, c := range cited {
			citedN = append(citedN, c.(map[string]any)["n"].(float64))
		}
		want := []float64{1}
		if len(sources) >= 2 {
			want = append(want, 2)
		}
		if !slices.Equal(citedN, want) {
			t.Errorf("cited = %v, want sources %v (9 is no source)", citedN, want)
		}

		// The prompt: numbered sources, their text, and the request to
		// cite them; the question is the user's message.
		up := e.fake.Last()
		var wire any
		if err := up.JSON(&wire); err != nil {
			t.Fatal(err)
		}
		var sent strings.Builder
		jsonStrings(wire, &sent)
		sample, _ := scifactSample()
		prionText := sample[prion]
		for _, frag := range []string{"[1] " + prionText.Title, prionText.Text[:200], "square brackets, such as [1]", prionQuery} {
			if !strings.Contains(sent.String(), frag) {
				t.Errorf("the upstream request lacks %q:\n%s", frag, sent.String())
			}
		}
		if !strings.Contains(sent.String(), "[1]") || (len(sources) >= 2 && !strings.Contains(sent.String(), "\n[2] ")) {
			t.Errorf("the upstream request does not number the sources:\n%s", sent.String())
		}

		// The stored turn: the question, the answer, and its sources.
		convID, msgID := first["conversation_id"].(string), first["message_id"].(string)
		if err := e.store.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		msgs, err := e.store.Messages(context.Background(), convID)
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) != 2 || msgs[0].Content != prionQuery || msgs[1].ID != msgID || msgs[1].Content != answer ||
			msgs[1].Status != ferry.StatusComplete {
			t.Errorf("stored turn = %+v, want the question and the complete answer", msgs)
		}
		stored, err := e.store.AnswerSources(context.Background(), msgID)
		if err != nil {
			t.Fatal(err)
		}
		if len(stored) != len(sources) {
			t.Fatalf("stored %d sources, want %d", len(stored), len(sources))
		}
		for i, s := range stored {
			ev := sources[i].(map[string]any)
			if s.N != i+1 || s.ConversationID != convID || s.DocumentID != ev["document_id"] || s.ExternalID != ev["external_id"] ||
				s.Title != ev["title"] || s.Snippet != ev["snippet"] || s.Page != 1 || s.ChunkID == 0 {
				t.Errorf("stored source %d = %+v, want the event's %v", i+1, s, ev)
			}
		}

		// GET /conversations/{id} shows the answer with its sources.
		req, _ := http.NewRequest("GET", e.url+"/conversations/"+convID, nil)
		req.Header.Set("Authorization", "Bearer "+e.a)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var detail struct {
			Messages []struct {
				ID      string `json:"id"`
				Sources []struct {
					N          int    `json:"n"`
					DocumentID string `json:"document_id"`
					Page       int    `json:"page"`
				} `json:"sources"`
			} `json:"messages"`
		}
		err = json.NewDecoder(resp.Body).Decode(&detail)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || len(detail.Messages) != 2 {
			t.Fatalf("GET the conversation: %d %v %+v", resp.StatusCode, err, detail)
		}
		if got := detail.Messages[1].Sources; detail.Messages[1].ID != msgID || len(got) != len(sources) ||
			got[0].N != 1 || got[0].DocumentID != sources[0].(map[string]any)["document_id"] || got[0].Page != 1 {
			t.Errorf("the conversation's answer shows sources %+v, want the stream's %v", got, sources)
		}
		if len(detail.Messages[0].Sources) != 0 {
			t.Errorf("the question shows sources %+v", detail.Messages[0].Sources)
		}

		// A follow-up in the same conversation sends the history.
		e.fake.SetScript(llmtest.Script{Deltas: []string{"Yes [1]."}})
		status, evs, raw = e.ragEvents(t, e.a, map[string]any{"question": "Was the survey about appendixes?", "conversation_id": convID})
		if status != http.StatusOK || evs[0]["conversation_id"] != convID {
			t.Fatalf("follow-up: %d %s", status, raw)
		}
		var again strings.Builder
		e.fake.Last().JSON(&wire)
		jsonStrings(wire, &again)
		if !strings.Contains(again.String(), answer) {
			t.Errorf("the follow-up's request lacks the earlier answer:\n%s", again.String())
		}
		// b cannot continue a's conversation.
		if status, _, raw := e.ragEvents(t, e.b, map[string]any{"question": prionQuery, "conversation_id": convID}); status != http.StatusNotFound {
			t.Errorf("b continuing a's conversation: %d %s", status, raw)
		}

		// Deleting the conversation deletes its answers' sources.
		req, _ = http.NewRequest("DELETE", e.url+"/conversations/"+convID, nil)
		req.Header.Set("Authorization", "Bearer "+e.a)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("delete conversation: %d", resp.StatusCode)
		}
		if err := e.store.Sync(context.Background()); err != nil {
			t.Fatal(err)
		}
		if left, err := e.store.AnswerSources(context.Background(), msgID); err != nil || len(left) != 0 {
			t.Errorf("after the conversation was deleted its sources are %v (%v), want none", left, err)
		}
	})
}

// TestRAGQueryRefusals: bad requests are refused before the first byte,
// and another user's data is 404.
func TestRAGQueryRefusals(t *testing.T) {
	eachRAGEngine(t, func(t *testing.T, e *ragEnv) {
		e.index(t, e.aID, "science", prion, folicAcid)
		e.index(t, e.bID, search.DefaultCollection, prion)
		before := len(e.fake.Requests())
		for _, c := range []struct {
			name     string
			token    string
			body     any
			status   int
			fragment string
		}{
			{"no question", e.a, map[string]any{"collection": "science"}, 422, "question"},
			{"blank question", e.a, map[string]any{"question": "   ", "collection": "science"}, 400, "question"},
			{"top_k too large", e.a, map[string]any{"question": prionQuery, "collection": "science", "top_k": 500}, 422, "top_k"},
			{"unconfigured model", e.a, map[string]any{"question": prionQuery, "collection": "science", "model": "claude-sonnet-4-6"}, 400, "model"},
			{"unconfigured model, no match", e.a, map[string]any{"question": "zebrafish", "collection": "science", "model": "claude-sonnet-4-6"}, 400, "model"},
			{"another user's collection", e.b, map[string]any{"question": prionQuery, "collection": "science"}, 404, "not found"},
			{"no such conversation", e.a, map[string]any{"question": prionQuery, "collection": "science", "conversation_id": "nope"}, 404, "not found"},
			{"no such conversation, no match", e.a, map[string]any{"question": "zebrafish", "collection": "science", "conversation_id": "nope"}, 404, "not found"},
			{"signed out", "", map[string]any{"question": prionQuery}, 401, ""},
		} {
			status, _, raw := e.ragEvents(t, c.token, c.body)
			if status != c.status || !strings.Contains(raw, c.fragment) {
				t.Errorf("%s: %d %s, want %d with %q", c.name, status, raw, c.status, c.fragment)
			}
		}
		if n := len(e.fake.Requests()) - before; n != 0 {
			t.Errorf("refusals reached the upstream %d times", n)
		}
	})
}

// TestRAGQueryNoMatch: an empty collection, or one where nothing matches,
// is answered that nothing relevant was found, without asking the model
// and without storing a turn.
func TestRAGQueryNoMatch(t *testing.T) {
	eachRAGEngine(t, func(t *testing.T, e *ragEnv) {
		e.index(t, e.aID, "science", prion, folicAcid)
		for _, c := range []struct{ name, collection, question string }{
			{"empty default collection", "", prionQuery},
			{"nothing matches", "science", "zebrafish regeneration"},
			{"only stopwords", "science", "what is the"},
		} {
			body := map[string]any{"question": c.question}
			if c.collection != "" {
				body["collection"] = c.collection
			}
			status, evs, raw := e.ragEvents(t, e.a, body)
			if status != http.StatusOK || len(evs) != 3 {
				t.Fatalf("%s: %d %s, want sources, text, done", c.name, status, raw)
			}
			if src, ok := evs[0]["sources"].([]any); !ok || len(src) != 0 {
				t.Errorf("%s: first event = %v, want no sources", c.name, evs[0])
			}
			if txt, _ := evs[1]["text"].(string); !strings.Contains(txt, "Nothing relevant") {
				t.Errorf("%s: text = %v, want that nothing relevant was found", c.name, evs[1])
			}
			if evs[2]["done"] != true || evs[2]["stop_reason"] != "no_match" || len(evs[2]["cited"].([]any)) != 0 {
				t.Errorf("%s: done = %v, want no_match and nothing cited", c.name, evs[2])
			}
		}
		if n := len(e.fake.Requests()); n != 0 {
			t.Errorf("a question with no match reached the upstream %d times", n)
		}
		var convs int
		if err := e.store.Reader().QueryRow(`SELECT COUNT(*) FROM conversations`).Scan(&convs); err != nil {
			t.Fatal(err)
		}
		if convs != 0 {
			t.Errorf("%d conversations stored for answers without a model", convs)
		}
	})
}
