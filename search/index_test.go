package search

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ferryhq/ferry"
	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/storetest"
)

// newUser stores a user and returns its id.
func newUser(t *testing.T, st *store.Store, name string) string {
	t.Helper()
	u := &ferry.User{ID: "u-" + name, Email: name + "@example.com", Name: name, Role: ferry.RoleUser}
	if err := st.CreateUser(context.Background(), u); err != nil {
		t.Fatal(err)
	}
	return u.ID
}

// addText adds a one-page document and fails the test on error.
func addText(t *testing.T, ix *Index, userID, collection string, doc Document, text string) *Document {
	t.Helper()
	d, err := ix.Add(context.Background(), userID, collection, doc, Split([]Page{{Text: text}}, ChunkOptions{}))
	if err != nil {
		t.Fatalf("add %q: %v", doc.Title, err)
	}
	return d
}

// search runs Lexical and fails the test on error.
func search(t *testing.T, ix *Index, userID, collection, query string) []Hit {
	t.Helper()
	hits, err := ix.Lexical(context.Background(), userID, collection, query, 10)
	if err != nil {
		t.Fatalf("search %q: %v", query, err)
	}
	return hits
}

func titles(hits []Hit) []string {
	out := make([]string, len(hits))
	for i, h := range hits {
		out[i] = h.Title
	}
	return out
}

// wantCode fails the test unless err carries code.
func wantCode(t *testing.T, err error, code ferry.Code, what string) {
	t.Helper()
	if err == nil || ferry.ErrorCode(err) != code {
		t.Errorf("%s: error %v, want code %s", what, err, code)
	}
}

func TestIndexAddSearchDelete(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		ix := New(st)
		alice := newUser(t, st, "alice")
		aspirin := addText(t, ix, alice, DefaultCollection, Document{Title: "Aspirin and the heart", ExternalID: "a-1",
			Metadata: json.RawMessage(`{"year": 2020}`)},
			"Low dose aspirin reduces the risk of myocardial infarction in patients with cardiovascular disease.")
		addText(t, ix, alice, DefaultCollection, Document{Title: "Statins"},
			"Statins lower cholesterol. Patients taking statins had fewer strokes over five years.")
		addText(t, ix, alice, DefaultCollection, Document{Title: "Sleep"},
			"Adults who sleep less than six hours a night report more headaches.")

		hits := search(t, ix, alice, DefaultCollection, "Does aspirin prevent heart attacks (myocardial infarctions)?")
		if len(hits) == 0 || hits[0].DocumentID != aspirin.ID {
			t.Fatalf("hits %v, want the aspirin document first", titles(hits))
		}
		h := hits[0]
		if h.ExternalID != "a-1" || h.Title != "Aspirin and the heart" || h.Page != 1 || h.LastPage != 1 || h.Ordinal != 0 ||
			h.ChunkID == 0 || h.Score <= 0 || !strings.Contains(h.Snippet, "aspirin") || !strings.HasPrefix(h.Text, "Low dose") {
			t.Errorf("hit %+v: want the chunk's document, page, text and a snippet with the query's words", h)
		}
		// Stemming: "stroke" finds "strokes", "patient" "Patients".
		if hits := search(t, ix, alice, DefaultCollection, "stroke"); len(hits) != 1 || hits[0].Title != "Statins" {
			t.Errorf("stroke: hits %v, want Statins only", titles(hits))
		}
		// Only stopwords: nothing to search for.
		if hits := search(t, ix, alice, DefaultCollection, "the of and"); len(hits) != 0 {
			t.Errorf("stopwords: hits %v, want none", titles(hits))
		}
		// The title is searched with every chunk.
		if hits := search(t, ix, alice, DefaultCollection, "heart"); len(hits) != 1 || hits[0].DocumentID != aspirin.ID {
			t.Errorf("heart: hits %v, want the aspirin document by its title", titles(hits))
		}

		got, err := ix.Document(ctx, alice, aspirin.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != StatusIndexed || got.Chunks != 1 || got.Collection != DefaultCollection ||
			!strings.Contains(string(got.Metadata), "2020") || got.ExternalID != "a-1" {
			t.Errorf("stored document %+v", got)
		}

		if err := ix.Delete(ctx, alice, aspirin.ID); err != nil {
			t.Fatal(err)
		}
		if hits := search(t, ix, alice, DefaultCollection, "aspirin myocardial"); len(hits) != 0 {
			t.Errorf("after delete: hits %v, want none", titles(hits))
		}
		wantCode(t, ix.Delete(ctx, alice, aspirin.ID), ferry.NotFound, "delete again")
		_, err = ix.Document(ctx, alice, aspirin.ID)
		wantCode(t, err, ferry.NotFound, "deleted document")
		c, err := ix.Collection(ctx, alice, DefaultCollection)
		if err != nil || c.Chunks != 2 {
			t.Errorf("collection after delete: %+v, %v; want 2 chunks", c, err)
		}
		assertStats(t, st)
	})
}

// assertStats checks each collection's statistics against its chunks and
// postings, which Add and Delete keep in step.
func assertStats(t *testing.T, st *store.Store) {
	t.Helper()
	rows, err := st.Reader().Query(`SELECT c.name, c.chunks, c.terms,
		(SELECT COUNT(*) FROM chunks k JOIN documents d ON d.id = k.document_id WHERE d.collection_id = c.id),
		(SELECT COALESCE(SUM(k.terms), 0) FROM chunks k JOIN documents d ON d.id = k.document_id WHERE d.collection_id = c.id),
		(SELECT COALESCE(SUM(p.tf), 0) FROM chunk_terms p WHERE p.collection_id = c.id)
		FROM collections c`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var chunks, terms, realChunks, realTerms, postings int64
		if err := rows.Scan(&name, &chunks, &terms, &realChunks, &realTerms, &postings); err != nil {
			t.Fatal(err)
		}
		if chunks != realChunks || terms != realTerms || postings != realTerms {
			t.Errorf("collection %s: stats say %d chunks and %d terms; there are %d chunks of %d terms, %d in postings",
				name, chunks, terms, realChunks, realTerms, postings)
		}
	}
}

func TestIndexIsolation(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		ix := New(st)
		alice, bob := newUser(t, st, "alice"), newUser(t, st, "bob")
		if _, err := ix.CreateCollection(ctx, alice, "papers"); err != nil {
			t.Fatal(err)
		}
		secret := addText(t, ix, alice, "papers", Document{Title: "Alice's secret"}, "The launch code is zebra quartz.")
		addText(t, ix, alice, DefaultCollection, Document{Title: "Alice's default"}, "Zebra crossings are safer.")

		// Bob has no collection "papers": searching it is NotFound, as is
		// adding to it, and his default finds nothing of Alice's.
		_, err := ix.Lexical(ctx, bob, "papers", "zebra quartz", 10)
		wantCode(t, err, ferry.NotFound, "bob searches alice's collection")
		_, err = ix.Add(ctx, bob, "papers", Document{Title: "x"}, nil)
		wantCode(t, err, ferry.NotFound, "bob adds to alice's collection")
		if hits := search(t, ix, bob, DefaultCollection, "zebra quartz"); len(hits) != 0 {
			t.Errorf("bob's default: hits %v, want none", titles(hits))
		}
		// Bob's own "papers" is his, and holds none of Alice's.
		if _, err := ix.CreateCollection(ctx, bob, "papers"); err != nil {
			t.Fatal(err)
		}
		addText(t, ix, bob, "papers", Document{Title: "Bob's"}, "Quartz watches keep time.")
		for _, h := range search(t, ix, bob, "papers", "zebra quartz launch code") {
			if h.Title != "Bob's" {
				t.Errorf("bob finds %q", h.Title)
			}
		}
		// Bob cannot read or delete Alice's document by id.
		_, err = ix.Document(ctx, bob, secret.ID)
		wantCode(t, err, ferry.NotFound, "bob reads alice's document")
		wantCode(t, ix.Delete(ctx, bob, secret.ID), ferry.NotFound, "bob deletes alice's document")
		if hits := search(t, ix, alice, "papers", "launch code"); len(hits) != 1 || hits[0].DocumentID != secret.ID {
			t.Errorf("alice's papers after bob's attempts: %v", titles(hits))
		}
		// A collection of Alice's that does not exist, and a bad name.
		_, err = ix.Lexical(ctx, alice, "nope", "zebra", 10)
		wantCode(t, err, ferry.NotFound, "missing collection")
		_, err = ix.CreateCollection(ctx, alice, "papers")
		wantCode(t, err, ferry.Conflict, "create twice")
		_, err = ix.CreateCollection(ctx, alice, "a/b")
		wantCode(t, err, ferry.Invalid, "bad name")
		// Deleting Alice's collection takes its documents out of search.
		if err := ix.DeleteCollection(ctx, alice, "papers"); err != nil {
			t.Fatal(err)
		}
		_, err = ix.Lexical(ctx, alice, "papers", "launch", 10)
		wantCode(t, err, ferry.NotFound, "deleted collection")
		if hits := search(t, ix, bob, "papers", "quartz"); len(hits) != 1 {
			t.Errorf("bob's papers after alice deleted hers: %v", titles(hits))
		}
		assertStats(t, st)
	})
}

func TestIndexReplaceByExternalID(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		ix := New(st)
		alice := newUser(t, st, "alice")
		first := addText(t, ix, alice, DefaultCollection, Document{ExternalID: "doc-7", Title: "Version one"},
			"The old text talks about pelicans.")
		second := addText(t, ix, alice, DefaultCollection, Document{ExternalID: "doc-7", Title: "Version two"},
			"The new text talks about flamingos.")
		if second.ID != first.ID || !second.CreatedAt.Equal(first.CreatedAt) {
			t.Errorf("replaced document has id %s created %v, want %s created %v", second.ID, second.CreatedAt, first.ID, first.CreatedAt)
		}
		if hits := search(t, ix, alice, DefaultCollection, "pelicans"); len(hits) != 0 {
			t.Errorf("old text still found: %v", titles(hits))
		}
		if hits := search(t, ix, alice, DefaultCollection, "flamingos"); len(hits) != 1 || hits[0].Title != "Version two" {
			t.Errorf("new text: %v", titles(hits))
		}
		// The same external id in another collection, or another user's,
		// is another document.
		if _, err := ix.CreateCollection(ctx, alice, "other"); err != nil {
			t.Fatal(err)
		}
		other := addText(t, ix, alice, "other", Document{ExternalID: "doc-7", Title: "Elsewhere"}, "Pelicans again.")
		if other.ID == first.ID {
			t.Error("a document of another collection replaced doc-7")
		}
		if hits := search(t, ix, alice, DefaultCollection, "flamingos"); len(hits) != 1 {
			t.Errorf("doc-7 in default after adding to other: %v", titles(hits))
		}
		// Concurrent re-ingestion of one external id leaves one document.
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = ix.Add(ctx, alice, DefaultCollection, Document{ExternalID: "race", Title: fmt.Sprint("race ", i)},
					Split([]Page{{Text: "Ostriches run fast."}}, ChunkOptions{}))
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("concurrent add %d: %v", i, err)
			}
		}
		if hits := search(t, ix, alice, DefaultCollection, "ostriches"); len(hits) != 1 {
			t.Errorf("after concurrent adds of one external id: %d hits, want 1", len(hits))
		}
		assertStats(t, st)
	})
}

func TestIndexChinese(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ix := New(st)
		alice := newUser(t, st, "alice")
		addText(t, ix, alice, DefaultCollection, Document{Title: "北京"},
			"北京大学是中国最早的国立综合性大学。校园位于海淀区，环境优美。")
		addText(t, ix, alice, DefaultCollection, Document{Title: "上海"},
			"上海是中国的经济中心，拥有繁忙的港口和众多的金融机构。")
		addText(t, ix, alice, DefaultCollection, Document{Title: "English"},
			"Peking University was founded in 1898.")
		for _, c := range []struct {
			query string
			want  []string
		}{
			{"北京大学在哪里？", []string{"北京"}},
			{"经济中心", []string{"上海"}},
			{"港口", []string{"上海"}},
			// One character alone finds it inside longer runs.
			{"港", []string{"上海"}},
			{"中国", []string{"北京", "上海"}},
			{"university 1898", []string{"English"}},
			{"东京", nil},
		} {
			got := titles(search(t, ix, alice, DefaultCollection, c.query))
			slices.Sort(got)
			want := slices.Clone(c.want)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("%s: found %v, want %v", c.query, got, want)
			}
		}
		hits := search(t, ix, alice, DefaultCollection, "海淀区的校园")
		if len(hits) == 0 || !strings.Contains(hits[0].Snippet, "海淀区") {
			t.Errorf("snippet for 海淀区: %+v", hits)
		}
	})
}

func TestIndexInvalid(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		ix := New(st)
		alice := newUser(t, st, "alice")
		for _, c := range []struct {
			what  string
			query string
			topK  int
		}{{"empty query", "  ", 5}, {"top_k 0", "x", 0}, {"top_k too big", "x", MaxTopK + 1}} {
			_, err := ix.Lexical(ctx, alice, DefaultCollection, c.query, c.topK)
			wantCode(t, err, ferry.Invalid, c.what)
		}
		for _, d := range []Document{
			{Metadata: json.RawMessage(`[1, 2]`)},
			{Metadata: json.RawMessage(`{"a":`)},
			{Status: "done"},
			{ExternalID: strings.Repeat("x", maxExternalID+1)},
		} {
			_, err := ix.Add(ctx, alice, DefaultCollection, d, nil)
			wantCode(t, err, ferry.Invalid, fmt.Sprintf("add %+v", d))
		}
		// The default collection before anything is added: empty, not
		// missing.
		if hits, err := ix.Lexical(ctx, alice, DefaultCollection, "anything", 5); err != nil || len(hits) != 0 {
			t.Errorf("empty default: %v, %v", hits, err)
		}
	})
}

// TestIndexEnginesAgree checks that SQLite and PostgreSQL rank alike: the
// same documents in the same order with the same scores.
func TestIndexEnginesAgree(t *testing.T) {
	if storetest.PostgresURL(t) == "" {
		t.Skip("needs PostgreSQL")
	}
	docs := map[string]string{}
	for i := range 40 {
		docs[fmt.Sprint("doc ", i)] = prose(uint64(100+i), 3+i%7)
	}
	queries := []string{"aspirin kidney function", "twelve months of follow up", "control subjects remained stable",
		"inflammatory markers treatment"}
	results := map[string][][]Hit{}
	for _, engine := range storetest.Engines(t) {
		st := storetest.Open(t, engine)
		ix := New(st)
		alice := newUser(t, st, "alice")
		for i := range 40 {
			title := fmt.Sprint("doc ", i)
			addText(t, ix, alice, DefaultCollection, Document{Title: title}, docs[title])
		}
		for _, q := range queries {
			results[engine] = append(results[engine], search(t, ix, alice, DefaultCollection, q))
		}
	}
	for i, q := range queries {
		a, b := results["sqlite"][i], results["postgres"][i]
		if len(a) != len(b) || len(a) == 0 {
			t.Fatalf("%s: %d hits on SQLite, %d on PostgreSQL", q, len(a), len(b))
		}
		for k := range a {
			if a[k].Title != b[k].Title || math.Abs(a[k].Score-b[k].Score) > 1e-9 {
				t.Errorf("%s: hit %d is %s (%.6f) on SQLite, %s (%.6f) on PostgreSQL", q, k,
					a[k].Title, a[k].Score, b[k].Title, b[k].Score)
			}
		}
	}
}

func TestIndexAddAll(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		ix := New(st)
		alice := newUser(t, st, "alice")
		item := func(ext, title, text string) Item {
			return Item{Document: Document{ExternalID: ext, Title: title}, Chunks: Split([]Page{{Text: text}}, ChunkOptions{})}
		}
		docs, err := ix.AddAll(ctx, alice, DefaultCollection, []Item{
			item("dup", "first", "Walruses sleep on ice."),
			item("", "other", "Penguins swim fast."),
			item("dup", "second", "Narwhals have tusks."),
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(docs) != 3 || docs[0].ID != docs[2].ID {
			t.Fatalf("documents %+v: want three, the first and last one document", docs)
		}
		if hits := search(t, ix, alice, DefaultCollection, "walruses narwhals penguins"); !slices.Equal(titles(hits), []string{"other", "second"}) &&
			!slices.Equal(titles(hits), []string{"second", "other"}) {
			t.Errorf("hits %v, want other and second (first was replaced in the batch)", titles(hits))
		}
		assertStats(t, st)

		// A bad item names itself, and nothing of the batch is stored.
		_, err = ix.AddAll(ctx, alice, DefaultCollection, []Item{item("", "ok", "Zebras."), {Document: Document{Metadata: json.RawMessage(`7`)}}})
		var fe *ferry.Error
		if !errors.As(err, &fe) || fe.Code != ferry.Invalid || fe.Fields["documents[1].metadata"] == "" {
			t.Errorf("bad item: %v, want Invalid naming documents[1].metadata", err)
		}
		// A batch that fails in the database leaves nothing either: the
		// second item reuses the id of a stored document.
		_, err = ix.AddAll(ctx, alice, DefaultCollection, []Item{item("", "ok", "Zebras."),
			{Document: Document{ID: docs[1].ID, Title: "clash"}, Chunks: Split([]Page{{Text: "Zebras again."}}, ChunkOptions{})}})
		wantCode(t, err, ferry.Conflict, "id of a stored document")
		if hits := search(t, ix, alice, DefaultCollection, "zebras"); len(hits) != 0 {
			t.Errorf("after failed batches: %v, want nothing stored", titles(hits))
		}
		assertStats(t, st)
	})
}
