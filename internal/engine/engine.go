// Package engine drives the rotations of one environment. One table
// (steps.go) says what a rotation does, step by step: how each step is
// journaled, what it does, and what happens when it fails or the process
// dies in it. Plan renders that table for --dry-run, the engine runs it
// (run.go), `rekey rotate --help` describes it (StepsHelp) and the crash
// tests enumerate its fault points (FaultPoints). Recover completes or rolls
// back what a crash left.
//
// Files: steps.go the table and its journaling; plan.go; run.go (Rotate,
// the run struct, create, drive); publish.go (render, write, read back,
// drift); rollback.go (fail, rollback, keep); recover.go; grace.go;
// migrate.go (data keys); probe.go (preflight, recover --probe).
package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/rekeyhq/rekey"
)

// KeepRotations is how many finished rotation journals an environment keeps
// (the audit log is the permanent record of every rotation).
const KeepRotations = 100

// Engine drives rotations of one environment through the steps of the
// table (steps.go), and recovers unfinished ones.
//
// Invariants:
//   - a new value is sealed in the store (durably) before any other system sees it;
//   - each step is journaled as the table says, before and after it runs;
//   - after a crash, Recover brings the store's current label and the targets into agreement.
type Engine struct {
	Store   rekey.Store
	Env     string
	Specs   []rekey.Spec
	Derived []rekey.Derived
	// Targets of the environment by name; a secret goes to its Spec.Targets (all when empty).
	Targets map[string]rekey.Target
	// TargetOrder is the order targets are written in (defaults to sorted names).
	TargetOrder []string
	Appliers    map[rekey.Kind]rekey.Applier
	// Migrators move the data a secret of their kind protects (the rows a
	// data key encrypts) during its rotation.
	Migrators map[rekey.Kind]rekey.Migrator
	Actor     string
	Now       func() time.Time
	Rand      io.Reader
	// KeepVersions prunes unlabeled versions beyond this many after a rotation (0 = keep all).
	KeepVersions int
	// Fault is called at every step boundary with its name ("create:after" ...,
	// FaultPoints lists them); tests use it to crash the process there. Nil in
	// production.
	Fault func(point string)
	// Progress receives one line per step for narration; nil discards.
	Progress func(format string, args ...any)
	// Services restarts what consumes changed keys; nil: none configured.
	Services rekey.Services
	// Checks verifies the application after publish; nil: none configured.
	Checks rekey.Checks
	// Hooks runs on_rotate hooks; nil: none configured.
	Hooks rekey.Hooks
	// Notify, when set, is called inside the transaction that records an
	// event people are told of (rekey.Event*): the end of rotation r
	// (rotation.failed, rotation.rolled_back, rotation.scheduled) or its
	// data keys left with rows under the previous key (reencrypt.incomplete);
	// names are the secrets concerned. It hands the notifications to the
	// store's outbox, so that they exist if and only if the event does; an
	// error aborts the transaction.
	Notify func(tx rekey.Tx, event string, r *rekey.Rotation, names []string) error
	// DeferOnline leaves the re-encryption of online data keys to after the
	// rotation (an incident's: services healthy and old values proved dead
	// first): the old key is published as NAME_PREVIOUS, the migrate and
	// remove-previous steps do not run, and the finish step marks the new
	// version's rows incomplete in its transaction, so `rekey reencrypt`
	// (FinishMigration) moves them and no later rotation strands them. A
	// rotation completed by Recover is not deferred: it moves the rows.
	DeferOnline bool

	specIndex map[string]int
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

// notify calls the Notify hook, if any, for event ("" is none).
func (e *Engine) notify(tx rekey.Tx, event string, r *rekey.Rotation, names []string) error {
	if e.Notify == nil || event == "" || len(names) == 0 {
		return nil
	}
	return e.Notify(tx, event, r, names)
}

func (e *Engine) fault(point string) {
	if e.Fault != nil {
		e.Fault(point)
	}
}

func (e *Engine) say(format string, args ...any) {
	if e.Progress != nil {
		e.Progress(format, args...)
	}
}

// Spec returns the spec of a secret.
func (e *Engine) Spec(name string) (*rekey.Spec, bool) {
	if len(e.specIndex) != len(e.Specs) {
		e.specIndex = make(map[string]int, len(e.Specs))
		for i := range e.Specs {
			e.specIndex[e.Specs[i].Name] = i
		}
	}
	i, ok := e.specIndex[name]
	if !ok {
		return nil, false
	}
	return &e.Specs[i], true
}

// applier returns the applier of a secret's kind, if any.
func (e *Engine) applier(name string) (*rekey.Spec, rekey.Applier) {
	s, ok := e.Spec(name)
	if !ok {
		return nil, nil
	}
	return s, e.Appliers[s.Kind]
}

// migrator returns the migrator of a secret's kind, if any.
func (e *Engine) migrator(name string) (*rekey.Spec, rekey.Migrator) {
	s, ok := e.Spec(name)
	if !ok {
		return nil, nil
	}
	return s, e.Migrators[s.Kind]
}

func (e *Engine) targetNames(s *rekey.Spec) []string {
	if len(s.Targets) > 0 {
		return s.Targets
	}
	return e.targetOrder()
}

func (e *Engine) targetNamesFor(name string) []string {
	s, ok := e.Spec(name)
	if !ok {
		return nil
	}
	return e.targetNames(s)
}

func (e *Engine) targetOrder() []string {
	if len(e.TargetOrder) > 0 {
		return e.TargetOrder
	}
	return slices.Sorted(maps.Keys(e.Targets))
}

// derivedOf lists the derived values built from one of names, in order.
func (e *Engine) derivedOf(names []string) []rekey.Derived {
	touched := map[string]bool{}
	for _, n := range names {
		touched[n] = true
	}
	var out []rekey.Derived
	for _, d := range e.Derived {
		for _, ref := range d.Template.Refs() {
			if base, _ := rekey.SplitRef(ref); touched[base] {
				out = append(out, d)
				break
			}
		}
	}
	return out
}

// consumedKeys lists the keys a change of names touches: the names, the
// derived values built from them, and (withPrevious) their previous keys.
func (e *Engine) consumedKeys(names []string, withPrevious bool) []string {
	out := append([]string(nil), names...)
	for _, d := range e.derivedOf(names) {
		out = append(out, d.Name)
	}
	if withPrevious {
		out = append(out, e.previousKeys(names)...)
	}
	return uniq(out)
}

// previousKeys lists the previous-value keys of names.
func (e *Engine) previousKeys(names []string) []string {
	var out []string
	for _, n := range names {
		if s, ok := e.Spec(n); ok && s.PreviousKey() != "" {
			out = append(out, s.PreviousKey())
		}
	}
	return out
}

type noServices struct{}

func (noServices) Restart(context.Context, []string) error { return nil }
func (noServices) Stop(context.Context, []string) error    { return nil }
func (noServices) Start(context.Context, []string) error   { return nil }

func (e *Engine) services() rekey.Services {
	if e.Services == nil {
		return noServices{}
	}
	return e.Services
}

func newID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

func uniq(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
