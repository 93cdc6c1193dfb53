package verify

import (
	"encoding/json"
	"net/url"
	"slices"
	"strings"

	"github.com/rekeyhq/rekey"
)

// NewRedactor returns a function that replaces each value (of 4 bytes or
// more), and its URL-encoded and JSON-escaped forms, with [REDACTED].
func NewRedactor(values ...rekey.Value) func(string) string {
	var needles []string
	seen := map[string]bool{}
	add := func(s string) {
		if len(s) >= 4 && !seen[s] {
			seen[s] = true
			needles = append(needles, s)
		}
	}
	for _, v := range values {
		s := v.RevealString()
		add(s)
		add(url.QueryEscape(s))
		add(strings.ReplaceAll(url.QueryEscape(s), "+", "%20"))
		add(url.PathEscape(s))
		if j, err := json.Marshal(s); err == nil {
			add(string(j[1 : len(j)-1]))
		}
	}
	// Longest first, so that a value containing another goes whole.
	slices.SortFunc(needles, func(a, b string) int { return len(b) - len(a) })
	return func(text string) string {
		for _, n := range needles {
			text = strings.ReplaceAll(text, n, rekey.Redacted)
		}
		return text
	}
}
