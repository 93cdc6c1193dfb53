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

// TestTemplateJWTAlgorithms: jwt384 and jwt512 sign with HS384 and HS512
// (an application that accepts only HS512 refuses jwt's HS256), and count
// as the jwt filter for Uses.
func TestTemplateJWTAlgorithms(t *testing.T) {
	for f, alg := range map[string]string{"jwt384": "HS384", "jwt512": "HS512"} {
		tm := rekey.MustParseTemplate("{{ JWT_SECRET | " + f + " }}")
		if !tm.Uses(rekey.JWTFilter) || !tm.UsesOn("JWT_SECRET", rekey.JWTFilter) || tm.UsesOn("OTHER", rekey.JWTFilter) {
			t.Fatalf("%s: Uses", f)
		}
		v, err := tm.Render(map[string]rekey.Value{"JWT_SECRET": rekey.NewValueString("k")})
		if err != nil {
			t.Fatal(err)
		}
		var claims jwt.RegisteredClaims
		if _, err := jwt.ParseWithClaims(v.RevealString(), &claims, func(*jwt.Token) (any, error) { return []byte("k"), nil },
			jwt.WithValidMethods([]string{alg})); err != nil || claims.Subject != rekey.JWTProbeSubject {
			t.Errorf("%s: not a valid %s token: %v", f, alg, err)
		}
		if _, err := jwt.Parse(v.RevealString(), func(*jwt.Token) (any, error) { return []byte("k"), nil }, jwt.WithValidMethods([]string{"HS256"})); err == nil {
			t.Errorf("%s: accepted as HS256", f)
		}
	}
}
