package atlas

import (
	"errors"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TokenTTL is the lifetime of a login token.
const TokenTTL = 15 * time.Minute

// ErrBadToken is returned by VerifyToken for any token it refuses.
var ErrBadToken = errors.New("atlas: invalid token")

// IssueToken returns an HS512 JWT for subject, signed with secret, valid
// for TokenTTL from now.
func IssueToken(secret []byte, subject string, now time.Time) (string, error) {
	return IssueTokenTTL(secret, subject, now, TokenTTL)
}

// IssueTokenTTL is IssueToken with a lifetime of ttl.
func IssueTokenTTL(secret []byte, subject string, now time.Time, ttl time.Duration) (string, error) {
	claims := jwt.RegisteredClaims{
		Subject:   subject,
		IssuedAt:  jwt.NewNumericDate(now),
		ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS512, claims).SignedString(secret)
}

// VerifyToken checks an HS512 token against each secret in turn (nil
// secrets are skipped) and returns its subject. The token must carry an
// expiry in the future. Only HS512 is accepted.
func VerifyToken(secrets [][]byte, token string) (string, error) {
	for _, s := range secrets {
		if len(s) == 0 {
			continue
		}
		var claims jwt.RegisteredClaims
		_, err := jwt.ParseWithClaims(token, &claims,
			func(*jwt.Token) (any, error) { return s, nil },
			jwt.WithValidMethods([]string{jwt.SigningMethodHS512.Alg()}),
			jwt.WithExpirationRequired(),
		)
		if err == nil && claims.Subject != "" {
			return claims.Subject, nil
		}
	}
	return "", ErrBadToken
}
