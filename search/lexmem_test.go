package search

import (
	"context"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/ferryhq/ferry/store"
	"github.com/ferryhq/ferry/store/storetest"
)

// warm loads the collection's postings into ix's memory and fails the test
// unless its searches then rank there.
func warm(t *testing.T, ix *Index, userID, collection string) {
	t.Helper()
	ctx := context.Background()
	for range 2 {
		if _, err := ix.Lexical(ctx, userID, collection, "warm", 1); err != nil {
			t.Fatal(err)
		}
		ix.lex.loads.Wait()
	}
	coll, err := ix.collectionState(ctx, userID, collection)
	if err != nil || coll == nil {
		t.Fatalf("collection %s: %+v, %v", collection, coll, err)
	}
	if ix.lex.get(coll) == nil {
		t.Fatalf("collection %s: not in memory after loading", collection)
	}
}

// sameRanking fails the test unless the two rankings hold the same chunks
// in the same order with the same scores; neighbours whose scores differ
// by rounding only may trade places.
func sameRanking(t *testing.T, what string, got, want []Hit) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d hits in memory, %d in SQL", what, len(got), len(want))
	}
	near := func(a, b float64) bool { return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b)) }
	for i := range got {
		if got[i].ChunkID == want[i].ChunkID && near(got[i].Score, want[i].Score) {
			continue
		}
		if i+1 < len(got) && got[i].ChunkID == want[i+1].ChunkID && got[i+1].ChunkID == want[i].ChunkID &&
			near(want[i].Score, want[i+1].Score) {
			continue
		}
		if i > 0 && got[i].ChunkID == want[i-1].ChunkID && got[i-1].ChunkID == want[i].ChunkID &&
			near(want[i].Score, want[i-1].Score) {
			continue
		}
		t.Fatalf("%s: hit %d is chunk %d (%.12f) in memory, chunk %d (%.12f) in SQL", what, i,
			got[i].ChunkID, got[i].Score, want[i].ChunkID, want[i].Score)
	}
}

// TestLexicalMemoryMatchesSQL checks that the in-memory postings rank as
// the postings table does, on a generated corpus in English and Chinese,
// after a full load and after loads of what changed: documents added,
// deleted, replaced by external_id.
func TestLexicalMemoryMatchesSQL(t *testing.T) {
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		ctx := context.Background()
		mem := New(st)
		inSQL := New(st)
		inSQL.LexicalMemory = 0
		alice := newUser(t, st, "alice")
		var ids []string
		add := func(from, to int) {
			for i := from; i < to; i++ {
				text := prose(uint64(1000+i), 2+i%9)
				if i%5 == 0 {
					text += " " + chinese(uint64(i), 3)
				}
				d := addText(t, mem, alice, DefaultCollection, Document{Title: fmt.Sprint("doc ", i), ExternalID: fmt.Sprint("e", i)}, text)
				ids = append(ids, d.ID)
			}
		}
		queries := []string{"aspirin kidney function", "twelve months of follow up", "control subjects remained stable",
			"inflammatory markers treatment", "patients patients blood pressure", "研究人员发现", "血压", "患者 aspirin",
			"the of and", "zzzunknownword"}
		compare := func(stage string) {
			t.Helper()
			warm(t, mem, alice, DefaultCollection)
			for _, q := range queries {
				for _, k := range []int{1, 10, 200} {
					got, err := mem.Lexical(ctx, alice, DefaultCollection, q, k)
					if err != nil {
						t.Fatal(err)
					}
					want, err := inSQL.Lexical(ctx, alice, DefaultCollection, q, k)
					if err != nil {
						t.Fatal(err)
					}
					sameRanking(t, fmt.Sprintf("%s, %q top %d", stage, q, k), got, want)
				}
			}
		}
		add(0, 120)
		compare("full load")
		add(120, 140)
		compare("added")
		for _, id := range []string{ids[3], ids[50], ids[130]} {
			if err := mem.Delete(ctx, alice, id); err != nil {
				t.Fatal(err)
			}
		}
		compare("deleted")
		// Replaced: the old chunks go, new ones come; the last document's
		// new chunks take its old chunks' ids on SQLite, which gives a
		// new row the highest id plus one.
		for _, i := range []int{139, 7, 60} {
			addText(t, mem, alice, DefaultCollection, Document{Title: "replaced", ExternalID: fmt.Sprint("e", i)},
				"Aspirin twelve months kidney "+chinese(uint64(500+i), 2))
		}
		compare("replaced")
		if m := mem.lex.memory(); m <= 0 {
			t.Errorf("memory in use %d; want the postings counted", m)
		}
	})
}

// TestLexicalMemoryCoherent checks that two instances (two Indexes on two
// connections to one database) see each other's changes at their next
// search when both rank in memory: a deleted document is gone at once.
func TestLexicalMemoryCoherent(t *testing.T) {
	for _, engine := range storetest.Engines(t) {
		t.Run(engine, func(t *testing.T) {
			ctx := context.Background()
			db := storetest.Database(t, engine)
			open := func() *Index {
				st, err := store.Open(ctx, db)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { st.Close() })
				if err := st.Migrate(ctx); err != nil {
					t.Fatal(err)
				}
				return New(st)
			}
			a, b := open(), open()
			u := newUser(t, a.st, "ann")
			addText(t, a, u, DefaultCollection, Document{Title: "Pets"}, "Cats sleep most of the day. 小猫很可爱。")
			d := addText(t, a, u, DefaultCollection, Document{Title: "Felines"}, "A feline hunts at dusk; cats purr.")
			warm(t, b, u, DefaultCollection)
			if got := titles(search(t, b, u, DefaultCollection, "cats")); len(got) != 2 {
				t.Fatalf("B before: %v; want both", got)
			}
			if got := titles(search(t, b, u, DefaultCollection, "猫")); !slices.Equal(got, []string{"Pets"}) {
				t.Fatalf("B, Chinese: %v; want [Pets]", got)
			}
			if err := a.Delete(ctx, u, d.ID); err != nil {
				t.Fatal(err)
			}
			if got := titles(search(t, b, u, DefaultCollection, "cats feline")); !slices.Equal(got, []string{"Pets"}) {
				t.Fatalf("B after A deleted: %v; want [Pets]", got)
			}
			// And once B's copy has caught up, in memory.
			warm(t, b, u, DefaultCollection)
			if got := titles(search(t, b, u, DefaultCollection, "cats feline")); !slices.Equal(got, []string{"Pets"}) {
				t.Fatalf("B in memory after A deleted: %v; want [Pets]", got)
			}
			addText(t, a, u, DefaultCollection, Document{Title: "Dogs"}, "Dogs bark at cats.")
			if got := titles(search(t, b, u, DefaultCollection, "bark")); !slices.Equal(got, []string{"Dogs"}) {
				t.Fatalf("B after A added: %v; want [Dogs]", got)
			}
		})
	}
}

// TestLexicalMemoryBudget checks that a collection too large for the
// budget is searched in SQL, and that loading one collection past the
// budget evicts the least recently searched.
func TestLexicalMemoryBudget(t *testing.T) {
	st := storetest.Open(t, "sqlite")
	ctx := context.Background()
	ix := New(st)
	u := newUser(t, st, "ann")
	for _, c := range []string{"one", "two"} {
		if _, err := ix.CreateCollection(ctx, u, c); err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			addText(t, ix, u, c, Document{Title: fmt.Sprint(c, i)}, prose(uint64(i), 5))
		}
	}
	warm(t, ix, u, "one")
	one := ix.lex.memory()
	// Room for one collection: loading the second evicts the first.
	ix.LexicalMemory = one * 3 / 2
	warm(t, ix, u, "two")
	ix.lex.mu.Lock()
	held := len(ix.lex.sets)
	ix.lex.mu.Unlock()
	if held != 1 || ix.lex.memory() > ix.LexicalMemory {
		t.Errorf("%d collections held in %d bytes; want 1 within %d", held, ix.lex.memory(), ix.LexicalMemory)
	}
	// Too little for either: searched in SQL, and still found.
	ix.LexicalMemory = 100
	coll, err := ix.collectionState(ctx, u, "one")
	if err != nil {
		t.Fatal(err)
	}
	if ix.lex.get(coll) != nil {
		t.Error("a collection over the budget was held")
	}
	ix.lex.loads.Wait()
	if hits := search(t, ix, u, "one", prose(3, 1)); len(hits) == 0 {
		t.Error("a collection over the budget found nothing")
	}
}
