package doctor

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/dotenv"
	"github.com/rekeyhq/rekey/internal/config"
)

// envWeakness is a managed value a .env target holds that is weak for its
// kind. It holds no value.
type envWeakness struct {
	file string // relative to the project folder
	line int
	env  string
	spec *rekey.Spec
	why  string
}

func (w envWeakness) String() string {
	return fmt.Sprintf("%s:%d: %s (%s) is weak: %s", w.file, w.line, w.spec.Name, w.env, w.why)
}

// checkStrength: no secret is weak, neither the current value in the store
// (storeWeak, from the status rows) nor the value a .env target holds (a
// hand edit, which status reports as drift, may be weak too). reported are
// the fingerprints of the store's weak values by environment and name: the
// same value in a .env is not reported twice.
func (d *run) checkStrength(storeWeak []string, reported map[[2]string]string) Check {
	const name = "strength"
	inEnv, skipped := d.envWeak(reported)
	if len(storeWeak) == 0 && len(inEnv) == 0 {
		if len(skipped) > 0 {
			return warn(name, "no weak secret in the store; could not read "+strings.Join(skipped, ", "), "make the .env readable and parsable (`rekey status` says what is wrong)")
		}
		return pass(name, "no weak secret in the store or the .env files")
	}
	var detail, fixes []string
	if len(storeWeak) > 0 {
		detail = append(detail, "weak: "+strings.Join(storeWeak, ", "))
		fixes = append(fixes, "rotate them to generated values: `rekey rotate NAME` (user-managed keys: get a longer one, `rekey set NAME`)")
	}
	var fixed []string
	for _, w := range inEnv {
		detail = append(detail, w.String())
		if !slices.Contains(fixed, w.spec.Name) {
			fixed = append(fixed, w.spec.Name)
			fixes = append(fixes, w.spec.Name+": "+rekey.WeakFix(w.spec))
		}
	}
	return fail(name, strings.Join(detail, "; "), strings.Join(fixes, "; "))
}

// envWeak reads the value every managed secret has in every .env target
// of every environment and returns those weak for their kind
// (rekey.Weakness), but for a value the store check reported already. The
// values are compared in-process and wiped; skipped names the files that
// could not be read.
func (d *run) envWeak(reported map[[2]string]string) (weak []envWeakness, skipped []string) {
	files := map[string]*dotenv.File{}
	seen := map[[2]string]bool{} // file, secret: a file shared by environments is read once
	for _, e := range d.cfg.Environments {
		for i := range d.cfg.Secrets {
			sp := &d.cfg.Secrets[i]
			targets, err := d.cfg.TargetsFor(e.Name, sp.Name)
			if err != nil {
				continue
			}
			for _, t := range targets {
				if t.Type != config.TargetDotenv || seen[[2]string{t.Path, sp.Name}] {
					continue
				}
				seen[[2]string{t.Path, sp.Name}] = true
				f, ok := files[t.Path]
				if !ok {
					f = d.parseEnv(t.Path, &skipped)
					files[t.Path] = f
				}
				if f == nil {
					continue
				}
				if w, ok := d.weakIn(f, t.Path, e.Name, sp, reported); ok {
					weak = append(weak, w)
				}
			}
		}
	}
	return weak, skipped
}

// parseEnv reads and parses a .env; nil (and the file in skipped) when it
// cannot. A missing .env is not skipped: status reports it.
func (d *run) parseEnv(path string, skipped *[]string) *dotenv.File {
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err == nil {
		f, perr := dotenv.Parse(d.rel(path), data)
		clear(data)
		if perr == nil {
			return f
		}
	}
	*skipped = append(*skipped, d.rel(path))
	return nil
}

// weakIn checks the value f holds for sp.
func (d *run) weakIn(f *dotenv.File, path, env string, sp *rekey.Spec, reported map[[2]string]string) (envWeakness, bool) {
	v, ok := f.Get(sp.Name)
	if !ok || v == "" {
		return envWeakness{}, false
	}
	val := rekey.NewValueString(v)
	defer val.Wipe()
	why := rekey.Weakness(sp, val)
	if why == "" {
		return envWeakness{}, false
	}
	if fp, ok := reported[[2]string{env, sp.Name}]; ok && fp == d.st.Fingerprint(val) {
		return envWeakness{}, false
	}
	return envWeakness{file: d.rel(path), line: f.Line(sp.Name), env: env, spec: sp, why: why}, true
}
