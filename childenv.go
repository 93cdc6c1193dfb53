package rekey

import "strings"

// IsKeyMaterialVar reports whether the environment variable name holds
// rekey's own key material: REKEY_MASTER_KEY, REKEY_PASSPHRASE, every
// REKEY_NEW_* (master rotate's new key or passphrase), and any other REKEY_*
// variable whose name says it holds a key, passphrase, password, secret or
// token. Other REKEY_* variables (REKEY_ACTOR, REKEY_ENVIRONMENT, ...) hold
// no secret and are not key material.
func IsKeyMaterialVar(name string) bool {
	n := strings.ToUpper(name)
	rest, ok := strings.CutPrefix(n, "REKEY_")
	if !ok {
		return false
	}
	if strings.HasPrefix(rest, "NEW_") {
		return true
	}
	for _, w := range []string{"KEY", "PASSPHRASE", "PASSWORD", "SECRET", "TOKEN"} {
		if strings.Contains(rest, w) {
			return true
		}
	}
	return false
}

// ChildEnv returns environ (KEY=VALUE entries, as os.Environ returns them)
// without rekey's key material (see IsKeyMaterialVar): the environment of
// every process rekey starts — services, checks, hooks, codecs, the command
// of `rekey run`. Entries are kept in order; the slice is a new one.
func ChildEnv(environ []string) []string {
	out := make([]string, 0, len(environ))
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if IsKeyMaterialVar(name) {
			continue
		}
		out = append(out, kv)
	}
	return out
}
