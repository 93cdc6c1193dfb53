package rekey

import (
	"regexp"
	"strings"
)

// CredentialLike says why the value v of key looks like a credential, in a
// few words that never quote it — "the provider prefix whsec_", "a
// connection string with a credential", "a high-entropy string", "a
// password-like value under a secret's name" — or "" when it does not. It is
// what `rekey example` will not copy and what `rekey doctor` refuses in a
// .env.example, whether rekey manages the value or not. key may be "".
func CredentialLike(key, v string) string {
	s := strings.TrimSpace(v)
	if s == "" {
		return ""
	}
	if p := credentialPrefix(s); p != "" {
		return "the provider prefix " + p
	}
	if creds, _, ok := connCredentials(s); !ok || len(creds) > 0 {
		return "a connection string with a credential"
	}
	if reHostCredential.MatchString(s) {
		return "a host with a credential (user:password@host)"
	}
	if highEntropy(s) {
		return "a high-entropy string"
	}
	if key != "" && reSecretName.MatchString(key) && passwordLike(s) {
		return "a password-like value under a secret's name"
	}
	return ""
}

// reHostCredential matches user:password@host[:port] without a scheme.
var reHostCredential = regexp.MustCompile(`^[^\s:/@]*:[^\s@]+@[A-Za-z0-9.\-\[\]:]+$`)

// reSecretName matches the names of keys that hold secrets.
var reSecretName = regexp.MustCompile(`(?i)PASS|PWD|SECRET|TOKEN|(^|_)KEY(S)?($|_)|CREDENTIAL|SIGNATURE|SIGNING|(^|_)AUTH|(^|_)DSN$|PRIVATE|SALT|COOKIE`)

// rePlaceholderWord marks a placeholder, not a value: "your-api-key-here",
// "change-me", "<token>", "${TOKEN}", "xxxx".
var rePlaceholderWord = regexp.MustCompile(`(?i)change|your|example|sample|dummy|placeholder|replace|fixme|todo|xxxx|\.\.\.|…|^<|>$|^\$|\{\{`)

// credentialPrefix returns the provider prefix of s (sk-, ghp_, whsec_, …)
// when what follows it looks random, "" otherwise.
func credentialPrefix(s string) string {
	for _, p := range providerPrefixes {
		if rest, ok := strings.CutPrefix(s, p); ok && len(rest) >= 16 && !rePlaceholderWord.MatchString(rest) {
			var lower, upper, digit bool
			for _, c := range rest {
				lower = lower || c >= 'a' && c <= 'z'
				upper = upper || c >= 'A' && c <= 'Z'
				digit = digit || c >= '0' && c <= '9'
			}
			if digit || lower && upper {
				return p
			}
		}
	}
	return ""
}

// highEntropy reports whether s holds a run of base64/hex/token characters
// that looks random: 32 hex digits or more; or 16 characters or more mixing
// upper case, lower case and digits with Shannon entropy of 3.5 bits or more
// (20 or more upper case and digits, 24 or more lower case and digits, with
// more). Words, host names, paths and version strings do not.
func highEntropy(s string) bool {
	isRun := func(c byte) bool {
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '+' || c == '/' || c == '=' || c == '_' || c == '-'
	}
	for i := 0; i < len(s); {
		if !isRun(s[i]) {
			i++
			continue
		}
		j := i
		for j < len(s) && isRun(s[j]) {
			j++
		}
		if randomRun(s[i:j]) {
			return true
		}
		i = j
	}
	return false
}

func randomRun(r string) bool {
	if len(r) < 16 {
		return false
	}
	var lower, upper, digit, hexOnly = false, false, false, true
	for i := 0; i < len(r); i++ {
		c := r[i]
		switch {
		case c >= 'a' && c <= 'z':
			lower = true
			hexOnly = hexOnly && c <= 'f'
		case c >= 'A' && c <= 'Z':
			upper = true
			hexOnly = hexOnly && c <= 'F'
		case c >= '0' && c <= '9':
			digit = true
		default:
			hexOnly = false
		}
	}
	h := Entropy(r)
	switch {
	case hexOnly && digit && (lower || upper) && len(r) >= 32:
		return true
	case lower && upper && digit:
		return h >= 3.5
	case upper && digit && !lower:
		return len(r) >= 20 && h >= 3.5
	case lower && digit && !upper:
		return len(r) >= 24 && h >= 4.0
	}
	return false
}

// passwordLike reports whether s could be a password: 8 characters or more,
// no blank, letters and digits, not a placeholder.
func passwordLike(s string) bool {
	if len(s) < 8 || strings.ContainsAny(s, " \t") || rePlaceholderWord.MatchString(s) {
		return false
	}
	var letter, digit bool
	for _, c := range s {
		letter = letter || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		digit = digit || c >= '0' && c <= '9'
	}
	return letter && digit
}
