package search

import (
	"slices"
	"strings"
	"testing"
)

func TestQueryTerms(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		// Lowercased, stopwords dropped, stemmed.
		{"The Patients were running in the trials", []string{"patient", "were", "run", "trial"}},
		// A possessive 's goes; an apostrophe inside a word stays joined.
		{"the patient's don't", []string{"patient", "dont"}},
		// Decimal points and thousands separators stay inside numbers;
		// other punctuation splits.
		{"IL-6 rose 3.5-fold (1,000 mg/kg)", []string{"il", "6", "rose", "3.5", "fold", "1,000", "mg", "kg"}},
		// Other scripts: lowercased, not stemmed.
		{"Ключевые СЛОВА β-catenin", []string{"ключевые", "слова", "β", "catenin"}},
		// CJK runs become pairs; a lone character stays itself.
		{"北京大学", []string{"北京", "京大", "大学"}},
		{"猫", []string{"猫"}},
		{"用Go语言写", []string{"用", "go", "语言", "言写"}},
		{"カタカナ", []string{"カタ", "タカ", "カナ"}},
		// Repeats are kept: a word asked for twice weighs twice.
		{"cancer cancer", []string{"cancer", "cancer"}},
		// Only stopwords or punctuation: nothing.
		{"the of and -- !!", nil},
		// A word longer than 64 characters is not a word.
		{"ok " + strings.Repeat("a", 65), []string{"ok"}},
	} {
		got := QueryTerms(c.in)
		if !slices.Equal(got, c.want) {
			t.Errorf("QueryTerms(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestDocumentTermsCJKUnigrams(t *testing.T) {
	got := DocumentTerms("小猫很可爱")
	want := []string{"小", "小猫", "猫", "猫很", "很", "很可", "可", "可爱", "爱"}
	if !slices.Equal(got, want) {
		t.Errorf("DocumentTerms = %q, want %q", got, want)
	}
	// A query's terms are among a document's for the same text, so a text
	// always finds itself.
	for _, text := range []string{"北京大学是中国最早的国立综合性大学。", "Patients' outcomes improved, 3.5-fold.", "猫"} {
		doc := DocumentTerms(text)
		for _, q := range QueryTerms(text) {
			if !slices.Contains(doc, q) {
				t.Errorf("%q: query term %q is not among the document's %q", text, q, doc)
			}
		}
	}
}

func TestSnippet(t *testing.T) {
	text := strings.Repeat("Unrelated filler words about nothing in particular. ", 20) +
		"Aspirin reduced the risk of myocardial infarction in older patients. " +
		strings.Repeat("More filler sentences follow here. ", 20)
	s := Snippet(text, "aspirin myocardial infarction")
	if !strings.Contains(s, "Aspirin reduced the risk of myocardial infarction") {
		t.Errorf("snippet %q misses the passage with the query's words", s)
	}
	if !strings.HasPrefix(s, "…") || !strings.HasSuffix(s, "…") {
		t.Errorf("snippet %q is cut on both sides but not marked", s)
	}
	if n := len([]rune(s)); n > snippetRunes+2 {
		t.Errorf("snippet is %d characters, want about %d", n, snippetRunes)
	}
	// Cut between words: the first and last words are whole.
	words := strings.Fields(strings.Trim(s, "…"))
	for _, w := range []string{words[0], words[len(words)-1]} {
		if !strings.Contains(text, " "+strings.TrimRight(w, ".")) && !strings.HasPrefix(text, w) {
			t.Errorf("snippet %q starts or ends inside a word (%q)", s, w)
		}
	}
	// No match: the start of the text, and a short text is whole.
	if s := Snippet("Short text.\nOn two lines.", "zebra"); s != "Short text. On two lines." {
		t.Errorf("short text: snippet %q", s)
	}
	zh := strings.Repeat("这是无关的句子。", 40) + "北京大学位于海淀区。" + strings.Repeat("这是无关的句子。", 40)
	if s := Snippet(zh, "海淀区"); !strings.Contains(s, "北京大学位于海淀区") {
		t.Errorf("Chinese snippet %q misses the match", s)
	}
}
