package rekey

import (
	"fmt"
	"strings"
)

// The strength a third-party API key (KindManual) needs: rekey does not
// generate it, but a value this short or this guessable is not one a
// provider issues (a hand-typed test key, a placeholder).
const (
	MinAPIKeyLen  = 20
	MinAPIKeyBits = 96
)

// minEntropy is the Shannon entropy per character below which a value of
// 16 characters or more is repetitive whatever its estimated bits.
const minEntropy = 2.0

// Weakness says why v is weak for a secret of s's kind, or "" when it is
// not. Generated kinds (signing secret, data-encryption key, database
// password, password) need [MinBitsFor] estimated bits ([EstimateBits], the same test
// `rekey status` applies); an API key needs [MinAPIKeyLen] characters and
// [MinAPIKeyBits] bits; a long value that repeats a few characters is weak
// too. The reason names the kind and never holds the value.
func Weakness(s *Spec, v Value) string {
	str := strings.TrimSpace(v.RevealString())
	if str == "" {
		return "empty"
	}
	what := KindLabel(s)
	bits := EstimateBits(v, s.Generator.Encoding)
	if s.Kind == KindManual {
		if n := len([]rune(str)); n < MinAPIKeyLen {
			return fmt.Sprintf("%d characters, short for an %s (at least %d)", n, what, MinAPIKeyLen)
		}
		if bits < MinAPIKeyBits {
			return fmt.Sprintf("an estimated %d bits, below the %d of an %s", bits, MinAPIKeyBits, what)
		}
	} else if min := MinBitsFor(s); bits < min {
		return fmt.Sprintf("an estimated %d bits, below the %d a %s needs", bits, min, what)
	}
	if h := Entropy(str); len(str) >= 16 && h < minEntropy {
		return fmt.Sprintf("repetitive (%.1f bits of entropy per character)", h)
	}
	return ""
}

// MinBitsFor is the strength below which s's value is weak: MinBits of its
// kind, but a password rekey generates (KindGenerated named *PASSWORD, whose
// default generator draws 24 bytes) needs what a database password needs,
// 128 bits, not a signing key's 256.
func MinBitsFor(s *Spec) int {
	if s.Kind == KindGenerated && KindLabel(s) == "password" {
		return MinBits(KindPostgresPassword)
	}
	return MinBits(s.Kind)
}

// KindLabel names what a secret is for messages: "signing secret",
// "data-encryption key", "database password", "password", "API key" or
// "generated secret".
func KindLabel(s *Spec) string {
	switch s.Kind {
	case KindDataKey:
		return "data-encryption key"
	case KindPostgresPassword:
		return "database password"
	case KindManual:
		return "API key"
	}
	switch {
	case s.Sessions != nil || reJWT.MatchString(s.Name):
		return "signing secret"
	case rePassword.MatchString(s.Name):
		return "password"
	}
	return "generated secret"
}

// WeakFix is the fix for a weak value of s: a generated kind is rotated to
// a value rekey draws; an API key is issued again by its provider.
func WeakFix(s *Spec) string {
	if s.Kind == KindManual {
		return fmt.Sprintf("issue a new key at the provider, then `rekey set %s`", s.Name)
	}
	return fmt.Sprintf("let rekey generate one: `rekey rotate %s`", s.Name)
}
