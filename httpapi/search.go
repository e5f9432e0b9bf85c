package httpapi

import (
	"context"

	"github.com/ferryhq/ferry/search"
)

// defaultSearchTopK is how many chunks a search returns when it does not
// say.
const defaultSearchTopK = 10

// searchInput is POST /collections/{name}/search.
type searchInput struct {
	Name string `path:"name" maxLength:"64"`
	Body struct {
		Query string `json:"query" minLength:"1" maxLength:"10000" doc:"What to look for: words in any language, Chinese included."`
		TopK  int    `json:"top_k,omitempty" minimum:"1" maximum:"1000" doc:"How many chunks to return, best first; default 10."`
		Mode  string `json:"mode,omitempty" enum:"hybrid,lexical,vector" doc:"hybrid (default) fuses the lexical and vector rankings when an embedder is configured (FERRY_EMBED_MODEL) and is lexical without one; lexical is BM25; vector is by cosine and needs an embedder."`
	}
}

// hitBody is one chunk a search found.
type hitBody struct {
	ChunkID    int64   `json:"chunk_id"`
	DocumentID string  `json:"document_id"`
	ExternalID string  `json:"external_id" doc:"The client's id of the document; empty when it gave none."`
	Title      string  `json:"title"`
	Page       int     `json:"page" doc:"The page the chunk starts on, from 1."`
	LastPage   int     `json:"last_page" doc:"The page it ends on."`
	Snippet    string  `json:"snippet" doc:"The passage that holds most of the query's words, on one line."`
	Score      float64 `json:"score" doc:"Higher is better; scores compare the hits of one search only: BM25 in lexical mode, the cosine in vector mode, the fused score in hybrid mode."`
}

type searchOutput struct {
	Body struct {
		Mode    string    `json:"mode" doc:"The ranking that was used: lexical when hybrid was asked without an embedder."`
		Results []hitBody `json:"results"`
	}
}

func newHitBody(h search.Hit) hitBody {
	return hitBody{ChunkID: h.ChunkID, DocumentID: h.DocumentID, ExternalID: h.ExternalID, Title: h.Title,
		Page: h.Page, LastPage: h.LastPage, Snippet: h.Snippet, Score: h.Score}
}

// retrieve returns the topK chunks of the user's collection that best
// match query in mode ("" is hybrid), and the mode that ranked them:
// lexical when hybrid was asked of a Retriever without an embedder. Its
// errors are search.Retriever.Search's: Invalid for a bad query, topK or
// mode (vector without an embedder), NotFound for a collection the user
// does not have.
func retrieve(ctx context.Context, r *search.Retriever, userID, collection, query string, topK int, mode string) ([]search.Hit, search.Mode, error) {
	m, err := search.ParseMode(mode)
	if err != nil {
		return nil, "", err
	}
	hits, err := r.Search(ctx, userID, collection, query, topK, m)
	if m == search.ModeHybrid && !r.HasEmbedder() {
		m = search.ModeLexical
	}
	return hits, m, err
}

// retriever is what the search endpoints search with: Services.Retriever,
// or, without one, a lexical Retriever over the ingest Service's index
// (nil without that either: needIngest then answers 503).
func (s *server) retriever() *search.Retriever {
	switch {
	case s.svc.Retriever != nil:
		return s.svc.Retriever
	case s.svc.Ingest != nil:
		return search.NewRetriever(s.svc.Ingest.Index(), nil, search.Fusion{}, s.log)
	}
	return nil
}

// handleSearch is POST /collections/{name}/search. Another user's
// collection is NotFound, as one that does not exist.
func handleSearch(r *search.Retriever) func(context.Context, *searchInput) (*searchOutput, error) {
	return func(ctx context.Context, in *searchInput) (*searchOutput, error) {
		topK := in.Body.TopK
		if topK == 0 {
			topK = defaultSearchTopK
		}
		hits, mode, err := retrieve(ctx, r, principal(ctx).User.ID, in.Name, in.Body.Query, topK, in.Body.Mode)
		if err != nil {
			return nil, err
		}
		out := &searchOutput{}
		out.Body.Mode = string(mode)
		out.Body.Results = make([]hitBody, len(hits))
		for i, h := range hits {
			out.Body.Results[i] = newHitBody(h)
		}
		return out, nil
	}
}
