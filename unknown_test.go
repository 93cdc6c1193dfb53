package rekey

import (
	"strings"
	"testing"
)

func TestUnknownSecret(t *testing.T) {
	specs := []Spec{{Name: "JWT_SECRET"}, {Name: "ENCRYPTION_KEY"}, {Name: "DATABASE_PASSWORD"}, {Name: "API_KEY"}, {Name: "ANTHROPIC_API_KEY"}}
	for _, tc := range []struct{ name, hint string }{
		{"JWT_SECRT", "did you mean JWT_SECRET?"},
		{"jwt_secret", "did you mean JWT_SECRET?"},
		{"DATABASE_PASWORD", "did you mean DATABASE_PASSWORD?"},
		{"API_KEYS", "did you mean API_KEY?"},
		{"ANTHROPIC_KEY", "did you mean ANTHROPIC_API_KEY?"},
		{"STRIPE_WEBHOOK_SECRET", "`rekey status` lists the managed secrets"},
	} {
		e := UnknownSecret(tc.name, specs)
		if e.Code != CodeNotFound || e.Msg != "no secret "+tc.name+" in rekey.yaml" || !strings.HasPrefix(e.Hint, tc.hint) {
			t.Errorf("%s: %v (hint %q)", tc.name, e, e.Hint)
		}
	}
}
