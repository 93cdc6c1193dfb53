package rekey

import (
	"sort"
	"strings"
)

// UnknownSecret is the error for a secret name rekey.yaml does not declare:
// not found, with the closest declared names as a suggestion (a typo such
// as JWT_SECRT), else where to find the list.
func UnknownSecret(name string, specs []Spec) *Error {
	e := Errorf(CodeNotFound, "no secret %s in rekey.yaml", name)
	if s := closest(name, specs); len(s) > 0 {
		return e.WithHint("did you mean %s? (`rekey status` lists the managed secrets)", strings.Join(s, " or "))
	}
	return e.WithHint("`rekey status` lists the managed secrets")
}

// closest lists the names of specs within a small edit distance of name
// (case aside), nearest first, at most three.
func closest(name string, specs []Spec) []string {
	type cand struct {
		name string
		d    int
	}
	var cs []cand
	max := 1 + len(name)/5
	for _, s := range specs {
		d := EditDistance(strings.ToUpper(name), strings.ToUpper(s.Name))
		if d <= max || sameWords(name, s.Name) {
			cs = append(cs, cand{s.Name, d})
		}
	}
	sort.SliceStable(cs, func(i, j int) bool { return cs[i].d < cs[j].d })
	var out []string
	for i := 0; i < len(cs) && i < 3; i++ {
		out = append(out, cs[i].name)
	}
	return out
}

// sameWords reports whether the words (split at '_') of one name are all
// words of the other, two words at least (ANTHROPIC_KEY, ANTHROPIC_API_KEY).
func sameWords(a, b string) bool {
	wa, wb := strings.Split(strings.ToUpper(a), "_"), strings.Split(strings.ToUpper(b), "_")
	if len(wa) > len(wb) {
		wa, wb = wb, wa
	}
	if len(wa) < 2 {
		return false
	}
	for _, w := range wa {
		found := false
		for _, x := range wb {
			found = found || w == x
		}
		if !found {
			return false
		}
	}
	return true
}

// EditDistance is the Levenshtein distance between a and b, in runes.
func EditDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) > 64 || len(rb) > 64 {
		// Not a typo of anything; avoid quadratic work on long keys.
		return max(len(ra), len(rb))
	}
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
