package rekey

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// AttrExposed marks a version whose value may be known to others. An
// emergency rotation sets it, to "emergency <rotation id>", on the version it
// supersedes, in the transaction that creates the new value. Rotate refuses to
// publish a value equal to an exposed version (rollback, set) unless a person
// gives a reason (NewValues.Force), which is audited.
const AttrExposed = "exposed"

// Exposure says why a value must not be published again.
type Exposure struct {
	// Version is the version that was exposed; Same is the version with the
	// same value that was looked up, when it is another one.
	Version, Same int
	// Rotation is the emergency rotation that superseded Version, if any.
	Rotation string
	When     time.Time // when that rotation started; zero if unknown
	Mark     string    // the AttrExposed mark, verbatim ("" for a store from before the mark)
}

// String says why, e.g. "superseded by emergency rotation 20260101T120000Z-0a1b2c3d on 2026-01-01".
func (x *Exposure) String() string {
	if x.Rotation == "" {
		return "marked exposed (" + x.Mark + ")"
	}
	s := "superseded by emergency rotation " + x.Rotation
	if !x.When.IsZero() {
		s += " on " + x.When.UTC().Format("2006-01-02")
	}
	return s
}

// Exposed returns the exposure of the value whose fingerprint is fp among the
// versions of env/name: a version marked AttrExposed, or one superseded by an
// emergency rotation whose record the store still keeps (stores written
// before the mark existed). It returns nil if that value was never exposed.
func Exposed(tx Tx, env, name, fp string) (*Exposure, error) {
	all, err := Exposures(tx, env, name)
	if err != nil {
		return nil, err
	}
	vs, err := tx.Versions(env, name)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, err
	}
	for i := len(vs) - 1; i >= 0; i-- { // the newest version with that value names it
		if x := all[vs[i].N]; x != nil && vs[i].Fingerprint == fp {
			return x, nil
		}
	}
	return nil, nil
}

// Exposures lists the exposed versions of env/name by version number,
// including the versions that hold the same value as an exposed one (Same
// set to their own number).
func Exposures(tx Tx, env, name string) (map[int]*Exposure, error) {
	vs, err := tx.Versions(env, name)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rs, err := tx.Rotations(env, false)
	if err != nil {
		return nil, err
	}
	byID := map[string]*Rotation{}
	for _, r := range rs {
		byID[r.ID] = r
	}
	out := map[int]*Exposure{}
	for _, v := range vs {
		m := v.Attrs[AttrExposed]
		if m == "" {
			continue
		}
		x := &Exposure{Version: v.N, Mark: m}
		if id, ok := strings.CutPrefix(m, "emergency "); ok {
			x.Rotation = id
			if r := byID[id]; r != nil {
				x.When = r.Started
			} else if t, err := time.Parse("20060102T150405Z", strings.SplitN(id, "-", 2)[0]); err == nil {
				x.When = t // the rotation ID begins with its start
			}
		}
		out[v.N] = x
	}
	// Before the mark existed: the version an emergency rotation superseded
	// is the newest one below its new version that was ever current (a
	// version of a rolled-back rotation never was).
	for _, r := range rs {
		n, ok := r.Secrets[name]
		if r.Mode != ModeEmergency || !ok {
			continue
		}
		for i := len(vs) - 1; i >= 0; i-- {
			v := vs[i]
			if v.N >= n {
				continue
			}
			if o := byID[v.RotationID]; o != nil && o.State == StateRolledBack {
				continue
			}
			if out[v.N] == nil {
				out[v.N] = &Exposure{Version: v.N, Rotation: r.ID, When: r.Started}
			}
			break
		}
	}
	// A later version holding the same value (a forced rollback) is exposed too.
	fps := map[string]*Exposure{}
	for _, v := range vs {
		if x := out[v.N]; x != nil && fps[v.Fingerprint] == nil {
			fps[v.Fingerprint] = x
		}
	}
	for _, v := range vs {
		if x := fps[v.Fingerprint]; x != nil && out[v.N] == nil {
			y := *x
			y.Same = v.N
			out[v.N] = &y
		}
	}
	return out, nil
}

// MarkExposed marks the current version of name exposed by emergency
// rotation id (AttrExposed "emergency <id>"); the first exposure is kept.
func MarkExposed(tx Tx, env, name, id string) error {
	cur, err := tx.Labeled(env, name, LabelCurrent)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if cur.Attrs[AttrExposed] != "" {
		return nil // the first exposure is the one that counts
	}
	return tx.SetAttrs(env, name, cur.N, WithAttr(cur.Attrs, AttrExposed, "emergency "+id))
}

// exposureError is Rotate's refusal to publish an exposed value.
func exposureError(name string, mode Mode, x *Exposure) *Error {
	what := fmt.Sprintf("v%d", x.Version)
	if x.Same != 0 && x.Same != x.Version {
		what = fmt.Sprintf("v%d (the same value as v%d)", x.Same, x.Version)
	}
	verb := "set " + name + " to the value of " + what
	if mode == ModeRollback {
		verb = "roll " + name + " back to " + what
	}
	return Errorf(CodeUnsafe, "refusing to %s: v%d was exposed: %s", verb, x.Version, x).
		WithHint("rotate it instead (`rekey rotate %s`), or, if the value is known to be safe, pass --force --reason TEXT (audited)", name)
}
