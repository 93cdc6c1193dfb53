package config

import (
	"strings"
	"testing"
)

// TestJWTFilterOnlyInChecks: the jwt filter (a fresh token at every
// render) is refused in a derived value, naming the line, and accepted in
// a check's header.
func TestJWTFilterOnlyInChecks(t *testing.T) {
	bad := head + "secrets:\n" + gen + "derived:\n  TOKEN: \"{{ JWT_SECRET | jwt }}\"\n"
	_, err := Parse("rekey.yaml", []byte(bad))
	if err == nil || !strings.HasPrefix(err.Error(), "rekey.yaml:11:") || !strings.Contains(err.Error(), "the jwt filter makes a new token at every render") {
		t.Fatalf("derived value with jwt: %v\n%s", err, numbered(bad))
	}
	good := head + "secrets:\n" + gen + `checks:
  old-token-refused:
    http:
      url: http://127.0.0.1:8080/api/me
      headers: {Authorization: "Bearer {{ JWT_SECRET | jwt }}"}
      expect: [401]
`
	c, err := Parse("rekey.yaml", []byte(good))
	if err != nil {
		t.Fatalf("a check's header with jwt: %v\n%s", err, numbered(good))
	}
	if len(c.Checks) != 1 || c.Checks[0].HTTP == nil || !c.Checks[0].HTTP.Headers[0].Value.Uses("jwt") {
		t.Fatalf("%+v", c.Checks)
	}
}
