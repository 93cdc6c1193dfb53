package rekey_test

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/rekeyhq/rekey"
)

// TestTemplateJWT: the jwt filter makes an HS256 token a JWT library
// accepts under the secret (subject rekey-probe, expiring in 5 minutes)
// and refuses under another key.
func TestTemplateJWT(t *testing.T) {
	tm := rekey.MustParseTemplate("Bearer {{ JWT_SECRET | jwt }}")
	if !tm.Uses(rekey.JWTFilter) || rekey.MustParseTemplate("{{ JWT_SECRET }}").Uses(rekey.JWTFilter) {
		t.Fatal("Uses")
	}
	v, err := tm.Render(map[string]rekey.Value{"JWT_SECRET": rekey.NewValueString("old-secret-value")})
	if err != nil {
		t.Fatal(err)
	}
	raw := v.RevealString()[len("Bearer "):]
	var claims jwt.RegisteredClaims
	tok, err := jwt.ParseWithClaims(raw, &claims, func(*jwt.Token) (any, error) { return []byte("old-secret-value"), nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
	if err != nil || !tok.Valid || claims.Subject != rekey.JWTProbeSubject {
		t.Fatalf("under its key: %v %+v", err, claims)
	}
	if life := claims.ExpiresAt.Sub(claims.IssuedAt.Time); life != 5*time.Minute {
		t.Errorf("valid for %v after it was issued, want 5 minutes", life)
	}
	if _, err := jwt.Parse(raw, func(*jwt.Token) (any, error) { return []byte("new-secret-value"), nil }); err == nil {
		t.Fatal("accepted under another key")
	}
}
