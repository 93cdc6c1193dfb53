package seal

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// The passphrase policy, applied wherever a passphrase is set (a new store,
// a new master key), whatever it comes from: a terminal or the environment.
const (
	// MinPassphraseLen is the fewest characters (Unicode code points) a
	// passphrase may have.
	MinPassphraseLen = 12
	// MinPassphraseDistinct is the fewest distinct characters: it refuses
	// repetitions such as "aaaaaaaaaaaa" or "abababababab", which are long
	// but guessed at once.
	MinPassphraseDistinct = 5
)

// ErrWeakPassphrase is wrapped by every error of CheckPassphrase.
var ErrWeakPassphrase = errors.New("weak passphrase")

// CheckPassphrase reports whether p may protect a store: at least
// MinPassphraseLen characters, at least MinPassphraseDistinct of them
// distinct, valid UTF-8. The error wraps ErrWeakPassphrase and says what is
// missing by counts, never by quoting the passphrase.
func CheckPassphrase(p []byte) error {
	if !utf8.Valid(p) {
		return fmt.Errorf("%w: not valid UTF-8", ErrWeakPassphrase)
	}
	n := utf8.RuneCount(p)
	if n < MinPassphraseLen {
		return fmt.Errorf("%w: too short (%d characters, at least %d)", ErrWeakPassphrase, n, MinPassphraseLen)
	}
	seen := map[rune]bool{}
	for _, r := range string(p) {
		seen[r] = true
	}
	if len(seen) < MinPassphraseDistinct {
		return fmt.Errorf("%w: a repetition (%d distinct characters, at least %d)", ErrWeakPassphrase, len(seen), MinPassphraseDistinct)
	}
	return nil
}
