package search

import (
	"bufio"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// sciFactDir is BEIR SciFact in the shared data, beside the repository.
var sciFactDir = filepath.Join("..", "..", "shared", "data", "scifact")

// sciFact is the test split of BEIR SciFact.
type sciFact struct {
	corpus  []sciFactDoc
	queries []sciFactQuery            // the test queries, in file order
	qrels   map[string]map[string]int // query id -> document id -> relevance
}

type sciFactDoc struct {
	ID    string `json:"_id"`
	Title string `json:"title"`
	Text  string `json:"text"`
}

type sciFactQuery struct {
	ID   string `json:"_id"`
	Text string `json:"text"`
}

// loadSciFact reads the collection, skipping the test when it is absent
// (failing it in CI, which has it).
func loadSciFact(t testing.TB) *sciFact {
	t.Helper()
	if _, err := os.Stat(sciFactDir); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("SciFact not found at %s (CI has shared/ beside the repository): %v", sciFactDir, err)
		}
		t.Skipf("SciFact not found at %s: %v", sciFactDir, err)
	}
	sf := &sciFact{qrels: map[string]map[string]int{}}
	readJSONL(t, filepath.Join(sciFactDir, "corpus.jsonl"), func(line []byte) {
		var d sciFactDoc
		if err := json.Unmarshal(line, &d); err != nil {
			t.Fatal(err)
		}
		sf.corpus = append(sf.corpus, d)
	})
	f, err := os.Open(filepath.Join(sciFactDir, "qrels", "test.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for first := true; sc.Scan(); first = false {
		fields := strings.Split(sc.Text(), "\t")
		if first || len(fields) != 3 {
			continue
		}
		rel, err := strconv.Atoi(fields[2])
		if err != nil {
			t.Fatalf("qrels: %q: %v", sc.Text(), err)
		}
		if sf.qrels[fields[0]] == nil {
			sf.qrels[fields[0]] = map[string]int{}
		}
		sf.qrels[fields[0]][fields[1]] = rel
	}
	readJSONL(t, filepath.Join(sciFactDir, "queries.jsonl"), func(line []byte) {
		var q sciFactQuery
		if err := json.Unmarshal(line, &q); err != nil {
			t.Fatal(err)
		}
		if sf.qrels[q.ID] != nil {
			sf.queries = append(sf.queries, q)
		}
	})
	if len(sf.corpus) != 5183 || len(sf.queries) != 300 {
		t.Fatalf("SciFact: %d documents and %d test queries, want 5183 and 300", len(sf.corpus), len(sf.queries))
	}
	return sf
}

func readJSONL(t testing.TB, path string, fn func([]byte)) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		fn(sc.Bytes())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
}

// ndcg returns nDCG at k of ranked (document ids, best first) against
// rels (document id -> graded relevance), as trec_eval's ndcg_cut: gain
// rel, discount log2(rank+1), the ideal ranking from rels.
func ndcg(ranked []string, rels map[string]int, k int) float64 {
	dcg := 0.0
	for i, id := range ranked[:min(k, len(ranked))] {
		dcg += float64(rels[id]) / math.Log2(float64(i+2))
	}
	var ideal []int
	for _, r := range rels {
		if r > 0 {
			ideal = append(ideal, r)
		}
	}
	sort.Sort(sort.Reverse(sort.IntSlice(ideal)))
	idcg := 0.0
	for i, r := range ideal[:min(k, len(ideal))] {
		idcg += float64(r) / math.Log2(float64(i+2))
	}
	if idcg == 0 {
		return 0
	}
	return dcg / idcg
}

// recall returns the share of the relevant documents of rels found in the
// first k of ranked.
func recall(ranked []string, rels map[string]int, k int) float64 {
	relevant, found := 0, 0
	top := map[string]bool{}
	for _, id := range ranked[:min(k, len(ranked))] {
		top[id] = true
	}
	for id, r := range rels {
		if r > 0 {
			relevant++
			if top[id] {
				found++
			}
		}
	}
	if relevant == 0 {
		return 0
	}
	return float64(found) / float64(relevant)
}
