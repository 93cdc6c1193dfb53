package seal

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckPassphrase(t *testing.T) {
	for p, ok := range map[string]bool{
		"":                             false,
		"a":                            false,
		"elevenchars":                  false,
		"twelve chars":                 true,
		"correct horse battery staple": true,
		"aaaaaaaaaaaaaaaaaaaa":         false,
		"abababababababab":             false,
		"abcdabcdabcdabcd":             false,
		"abcdeabcdeab":                 true,
		"ñandú-ñandú-ñ":                true,  // 13 characters, more bytes
		"ñññññññññññ":                  false, // 11 characters, 22 bytes
		"\xff\xfe\xfd\xfc\xfb\xfa\xf9\xf8\xf7\xf6\xf5\xf4": false,
	} {
		err := CheckPassphrase([]byte(p))
		if (err == nil) != ok {
			t.Errorf("CheckPassphrase(%q) = %v, want ok %v", p, err, ok)
		}
		if err != nil {
			if !errors.Is(err, ErrWeakPassphrase) {
				t.Errorf("CheckPassphrase(%q): %v does not wrap ErrWeakPassphrase", p, err)
			}
			if len(p) > 3 && strings.Contains(err.Error(), p) {
				t.Errorf("CheckPassphrase(%q): the error quotes the passphrase", p)
			}
		}
	}
}
