package doctor

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/dotenv"
	"github.com/rekeyhq/rekey/internal/scan"
)

// checkExample: a .env.example sits beside each .env and holds no real value:
// no stored version of a secret (as is, percent-encoded, or inside a longer
// value), and no value that looks like a credential, managed or not.
func (d *run) checkExample(vals []storedValue) Check {
	const name = "example"
	fps := map[string][]storedValue{}
	for _, v := range vals {
		fp := d.st.Fingerprint(v.value)
		fps[fp] = append(fps[fp], v)
	}
	var missing, leaks, credLike, ok []string
	done := map[string]bool{}
	for _, t := range d.targets {
		p := filepath.Join(filepath.Dir(t.Path), ".env.example")
		if done[p] {
			continue
		}
		done[p] = true
		data, err := os.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, d.rel(p))
			continue
		}
		if err != nil {
			return warn(name, fmt.Sprintf("skipped: cannot read %s", d.rel(p)), "make it readable")
		}
		found := map[string]string{} // version label → how it is there
		var looks []string           // values that look like credentials, managed or not
		if f, err := dotenv.Parse(d.rel(p), data); err == nil {
			for _, k := range f.Keys() {
				v, _ := f.Get(k)
				if v == "" {
					continue
				}
				val := rekey.NewValueString(v)
				for _, sv := range fps[d.st.Fingerprint(val)] {
					found[sv.label()] = k + " is " + sv.label()
				}
				val.Wipe()
				if why := exampleCredential(k, v); why != "" && v != d.Placeholder {
					looks = append(looks, fmt.Sprintf("%s:%d: %s holds %s", d.rel(p), f.Line(k), k, why))
				}
			}
		}
		// Values embedded in longer ones (a password inside DATABASE_URL).
		for _, sv := range vals {
			if _, ok := found[sv.label()]; !ok && sv.value.Len() >= minSearchLen && sv.in(data) {
				found[sv.label()] = "holds " + sv.label()
			}
		}
		if len(found) > 0 {
			var what []string
			for _, l := range slices.Sorted(maps.Keys(found)) {
				what = append(what, found[l])
			}
			leaks = append(leaks, d.rel(p)+": "+strings.Join(what, ", "))
		}
		credLike = append(credLike, looks...)
		if len(found) == 0 && len(looks) == 0 {
			ok = append(ok, d.rel(p))
		}
	}
	if len(leaks) > 0 || len(credLike) > 0 {
		var detail []string
		if len(leaks) > 0 {
			detail = append(detail, "real values in "+strings.Join(leaks, "; "))
		}
		if len(credLike) > 0 {
			detail = append(detail, "values that look like credentials: "+strings.Join(credLike, "; "))
		}
		return fail(name, strings.Join(detail, "; "),
			"treat them as leaked: rotate the managed ones (`rekey rotate NAME --emergency`) and the others at their providers, then rewrite the file with `rekey example --force` (placeholders only)")
	}
	if len(missing) > 0 {
		return warn(name, "missing: "+strings.Join(missing, ", "), "run `rekey example` and commit the result")
	}
	if len(ok) == 0 {
		return pass(name, "no .env target")
	}
	return pass(name, "no real value in "+strings.Join(ok, ", "))
}

// defaultScanRules are scan's built-in rules, compiled once.
var defaultScanRules = sync.OnceValue(scan.DefaultRules)

// exampleCredential says why the value v of key in a .env.example looks
// like a credential ("" when it does not): rekey.CredentialLike (a provider
// prefix, a connection string with a credential, a high-entropy string, a
// password-like value under a secret's name), or a format of scan's built-in
// rules (a JWT, a PEM private key, a cloud key). Never the value.
func exampleCredential(key, v string) string {
	if why := rekey.CredentialLike(key, v); why != "" {
		return why
	}
	for _, r := range defaultScanRules().Rules {
		if r.ID == "generic-secret" || r.Regex == nil {
			continue // CredentialLike covers it, on the value alone
		}
		m := r.Regex.FindStringSubmatch(v)
		if m == nil {
			continue
		}
		secret := m[0]
		for _, g := range m[1:] {
			if g != "" {
				secret = g
				break
			}
		}
		if r.Entropy == 0 || rekey.Entropy(secret) >= r.Entropy {
			return "a " + r.Description
		}
	}
	return ""
}
