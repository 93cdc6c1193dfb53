package config

import (
	"testing"

	"github.com/rekeyhq/rekey"
)

// TestHTTPFollowRedirects: follow_redirects of an http check is none by
// default, none or same-origin when given; anything else is an error at
// its line.
func TestHTTPFollowRedirects(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"", ""},
		{"      follow_redirects: none\n", ""},
		{"      follow_redirects: same-origin\n", rekey.RedirectsSameOrigin},
	} {
		c, err := Parse("rekey.yaml", []byte(svcHead+"checks:\n  h:\n    http:\n      url: http://x/\n"+tc.yaml))
		if err != nil {
			t.Fatalf("%q: %v", tc.yaml, err)
		}
		if got := c.Checks[0].HTTP.FollowRedirects; got != tc.want {
			t.Errorf("%q: FollowRedirects %q, want %q", tc.yaml, got, tc.want)
		}
	}
	checkErrorAt(t, "follow_redirects: always", svcHead+"checks:\n  h:\n    http:\n      url: http://x/\n      follow_redirects: always # <-\n",
		`follow_redirects of check h must be none or same-origin, not "always"`, "same-origin")
	checkErrorAt(t, "follow_redirects: true", svcHead+"checks:\n  h:\n    http:\n      url: http://x/\n      follow_redirects: true # <-\n",
		"follow_redirects of check h", "same-origin")
}
