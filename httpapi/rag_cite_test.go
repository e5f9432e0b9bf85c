package httpapi

import (
	"slices"
	"testing"
)

// TestCitedNumbers reads the citations models write: [n], several in one
// pair of brackets, full-width brackets, each number once and in order,
// and nothing that is not a source's number.
func TestCitedNumbers(t *testing.T) {
	for _, c := range []struct {
		text string
		n    int
		want []int
	}{
		{"Prions were found [2].", 3, []int{2}},
		{"Both [3][1], again [1].", 3, []int{1, 3}},
		{"Listed [1, 3] and [2,3].", 3, []int{1, 2, 3}},
		{"朊病毒【2】，见[1、3]。", 3, []int{1, 2, 3}},
		{"No such source [4], nor [0], nor [12].", 3, nil},
		{"Not citations: [a], [1-2], [ ], x[1.5].", 3, nil},
		{"Nothing cited.", 5, nil},
		{"[1]", 0, nil},
	} {
		if got := citedNumbers(c.text, c.n); !slices.Equal(got, c.want) {
			t.Errorf("citedNumbers(%q, %d) = %v, want %v", c.text, c.n, got, c.want)
		}
	}
}
