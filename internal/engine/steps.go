package engine

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
)

// The steps of a rotation: the one place that says what a rotation does, in
// order. The engine runs them (drive), Plan prints their lines, StepsHelp
// is their part of `rekey rotate --help`, and FaultPoints lists where a test
// may crash the process. A new step (notify, per-host publish) is a new row.
//
//	step             journal      runs when                 on failure      after a crash
//	create           atomic       always                    nothing to undo nothing (before) / forward
//	apply            with next    a kind has an Applier     roll back       forward
//	stop             committed    maintenance data key      roll back       forward
//	migrate          committed    maintenance, not moved    keep            forward (not run again once it ended ok)
//	publish          intent       always                    roll back       forward
//	start            with next    maintenance data key      roll back       forward
//	restart          with next    services declared         roll back       forward
//	migrate          committed    online, not moved         keep            forward (not run again once it ended ok)
//	remove-previous  with next    online data key           roll back       forward
//	hooks            with next    on_rotate hooks           roll back       forward
//	verify           with next    always                    roll back       forward
//	finish           atomic       always                    return error    forward (before) / done
//	end-grace        none         emergency                 return error    done
//	rollback         committed    a step failed (undo)      return error    back
//
// "roll back" is fail: a scheduled or manual rotation rolls back; one that
// published and is an emergency, or whose data already moved, keeps the new
// values. "keep" is keepIncomplete: rows may be on the new key already.
// "forward": the create commit journals the publish intent, so Recover
// completes every rotation that got past create (every step is idempotent).
var steps []stepDef

// rollbackStep is the undo of a failed rotation: not a forward step.
var rollbackStep = stepDef{
	name: rekey.StepRollback, journal: committed, needs: NeedFailure, resume: back,
	do: (*Engine).restore,
}

// Step names that are not journaled (the journaled ones are rekey.Step*).
const (
	stepStart          = "start"
	stepRestart        = "restart"
	stepRemovePrevious = "remove-previous"
	stepHooks          = "hooks"
	stepEndGrace       = "end-grace"
)

func init() {
	steps = []stepDef{
		{name: rekey.StepCreate, journal: atomic, resume: forward, do: (*Engine).create, plan: planCreate,
			help: "the new values are sealed in the store (pending) and synced to disk\nbefore anything else sees them"},
		{name: rekey.StepApply, journal: withNext, needs: NeedApplier, undo: undoRollBack, resume: forward, do: (*Engine).apply, plan: planApply,
			help: "kind-specific work: ALTER ROLE with a SCRAM verifier computed here\nfor a PostgreSQL password (never the plaintext)"},
		{name: rekey.StepStop, journal: committed, needs: NeedMaintenance, undo: undoRollBack, resume: forward, do: (*Engine).stop, plan: planStop},
		{name: rekey.StepMigrate, journal: committed, needs: NeedMaintenance, skip: alreadyMigrated, undo: undoKeep, resume: forward,
			moves: func(x *run) []string { return x.maint }, do: (*Engine).migrateMaintenance, plan: planMigrateMaintenance},
		{name: rekey.StepPublish, journal: intent, undo: undoRollBack, resume: forward, do: (*Engine).publish, plan: planPublish, publishes: true,
			help: "the .env targets get the new values and every derived value\n(DATABASE_URL) in one atomic write each; other bytes stay identical.\n" +
				"A signing secret with sessions: {mode: graceful} also publishes the\nold value as NAME_PREVIOUS until its grace ends; an online data key\npublishes the old key as NAME_PREVIOUS while rows move"},
		{name: stepStart, journal: withNext, needs: NeedMaintenance, undo: undoRollBack, resume: forward, do: (*Engine).start},
		{name: stepRestart, journal: withNext, needs: NeedServices, undo: undoRollBack, resume: forward, do: (*Engine).restart, plan: planRestart,
			help: "the services (rekey.yaml services:) that consume a changed key"},
		{name: rekey.StepMigrate, journal: committed, needs: NeedOnline, skip: alreadyMigrated, undo: undoKeep, resume: forward,
			moves: func(x *run) []string { return x.online }, do: (*Engine).migrateOnline, plan: planMigrateOnline,
			help: "a data key: every configured column is re-encrypted from the old\nkey to the new one (resumable; see `rekey reencrypt`); then\nNAME_PREVIOUS is removed and its consumers restarted"},
		{name: stepRemovePrevious, journal: withNext, needs: NeedOnline, undo: undoRollBack, resume: forward, do: (*Engine).removePrevious},
		{name: stepHooks, journal: withNext, needs: NeedHooks, undo: undoRollBack, resume: forward, do: (*Engine).runHooks, plan: planHooks,
			help: "on_rotate hooks (DELETE FROM sessions, a command)"},
		{name: rekey.StepVerify, journal: withNext, undo: undoRollBack, resume: forward, do: (*Engine).verify, plan: planVerify,
			help: "the targets are read back, the database accepts the new password,\nand every check (rekey.yaml checks:) passes"},
		{name: rekey.StepFinish, journal: atomic, resume: done, do: (*Engine).commitFinish, report: (*Engine).sayCurrent, plan: planFinish,
			help: "pending becomes current, current becomes previous"},
		{name: stepEndGrace, journal: unjournaled, needs: NeedEmergency, resume: done, do: (*Engine).endGrace},
	}
}

// stepDef is one row of the table.
type stepDef struct {
	// name is the journal entry's name (rekey.Step* when journaled) and the
	// prefix of the step's fault points, name:before and name:after.
	name    string
	journal journal
	// needs says which rotations run the step; skip, if set, skips it
	// still (a migration that already ended is not run again).
	needs Need
	skip  func(e *Engine, x *run) bool
	// do is the step, forward. It must be idempotent: recovery runs it
	// again after a crash.
	do func(e *Engine, ctx context.Context, x *run) error
	// undo is what a failure of do leads to; resume what Recover does with
	// a rotation that crashed once the step ended.
	undo   undo
	resume resume
	// moves lists the data keys whose rows the step moves (migrate): what
	// undoKeep keeps.
	moves func(x *run) []string
	// plan is the step's line in a secret's plan ("" for none); help its
	// text in `rekey rotate --help` (none: described by another step).
	plan func(e *Engine, p *planned) string
	help string
	// publishes: once it ended, the targets hold the new values.
	publishes bool
	// report narrates the step once past its after point (nil: do narrates).
	report func(e *Engine, x *run)
}

// journal says how a step is recorded in its rotation's journal
// (Rotation.Steps), one mechanism for all: Engine.step opens the entry,
// runs the step and closes the entry, committing as the policy says.
//
// The policies differ in when the journal reaches the disk (a commit is an
// fsync). No commit sits between ALTER ROLE (apply) and the .env write
// (publish): it keeps the window in which a fresh connection with the old
// password fails as short as it can be (bench BenchmarkLoginLoad measures
// it). So apply is journaled with the next commit, and publish's start is
// committed earlier, in the create transaction, as the rotation's intent to
// go forward.
type journal int

const (
	// atomic: the step is one store transaction, and its entry is written
	// in it (create, finish).
	atomic journal = iota
	// committed: the entry is committed before the step runs and again with
	// its outcome (stop, migrate, rollback): recovery knows whether a
	// migration ended.
	committed
	// withNext: the entry is kept in memory and reaches the store with the
	// next commit of the rotation (apply, start, restart, remove-previous,
	// hooks, verify). It is placed before the
	// intent entries of the steps after it, so the journal reads create,
	// apply, publish.
	withNext
	// intent: the entry is opened in the create transaction (publish): from
	// that commit on, recovery completes the rotation. Its outcome reaches
	// the store with the next commit.
	intent
	// unjournaled: no entry (end-grace: it runs after finish closed the
	// journal; ending a grace is audited as grace.expire). Its fault points
	// exist all the same.
	unjournaled
)

// undo is what a failed step leads to.
type undo int

const (
	// undoNone returns the error: nothing to undo (create and finish are one
	// transaction that did not commit; end-grace runs after finish).
	undoNone undo = iota
	// undoRollBack is fail: roll back, unless the new values must stay (an
	// emergency that published, data already on the new key).
	undoRollBack
	// undoKeep is keepIncomplete: the data may have moved part way, so the
	// new values stay and the old key stays published and sealed.
	undoKeep
)

// resume is what Recover does with a rotation that crashed after a step.
type resume int

const (
	forward resume = iota // complete it (the create commit journaled the publish intent)
	done                  // nothing: it had finished
	back                  // finish rolling it back
)

// Need is what a rotation must involve for a step to run.
type Need string

// The needs of the steps.
const (
	NeedNothing     Need = ""            // every rotation
	NeedApplier     Need = "applier"     // a secret whose kind has an Applier (ALTER ROLE, re-encryption)
	NeedMaintenance Need = "maintenance" // a data key re-encrypted with its consumers stopped
	NeedServices    Need = "services"    // services declared for the environment
	NeedOnline      Need = "online"      // a data key re-encrypted while the app runs
	NeedHooks       Need = "hooks"       // a secret with on_rotate hooks
	NeedEmergency   Need = "emergency"   // an --emergency rotation
	NeedFailure     Need = "failure"     // a step failed: the rotation rolls back
)

// involves reports whether the rotation x runs the steps that need n.
func (e *Engine) involves(x *run, n Need) bool {
	switch n {
	case NeedApplier:
		for _, name := range x.names {
			if _, a := e.applier(name); a != nil {
				return true
			}
		}
		return false
	case NeedMaintenance:
		return len(x.maint) > 0
	case NeedServices:
		return e.Services != nil
	case NeedOnline:
		return len(x.online) > 0
	case NeedHooks:
		for _, name := range x.names {
			if s, ok := e.Spec(name); ok && s.Sessions != nil && len(s.Sessions.OnRotate) > 0 {
				return true
			}
		}
		return false
	case NeedEmergency:
		return x.r.Mode == rekey.ModeEmergency
	case NeedFailure:
		return false
	}
	return true
}

// step runs one step of x: it opens the step's journal entry, crosses the
// fault point name:before, runs it, closes the entry and crosses
// name:after if it succeeded, committing as its journal policy says.
func (e *Engine) step(ctx context.Context, x *run, st *stepDef) error {
	i, err := e.open(ctx, x.r, st)
	if err != nil {
		return err
	}
	e.fault(st.name + ":before")
	ferr := st.do(e, ctx, x)
	if err := e.close(ctx, x.r, st, i, ferr); err != nil {
		return err
	}
	if ferr == nil {
		e.fault(st.name + ":after")
		if st.report != nil {
			st.report(e, x)
		}
	}
	return ferr
}

// open opens the journal entry of st and returns its index (-1: none).
func (e *Engine) open(ctx context.Context, r *rekey.Rotation, st *stepDef) (int, error) {
	entry := rekey.Step{Name: st.name, Started: e.now()}
	switch st.journal {
	case unjournaled:
		return -1, nil
	case intent:
		if i := lastIndex(r, st.name); i >= 0 {
			return i, nil
		}
	case withNext:
		if i := e.laterIntent(r, st); i >= 0 {
			r.Steps = append(r.Steps[:i], append([]rekey.Step{entry}, r.Steps[i:]...)...)
			return i, nil
		}
	}
	r.Steps = append(r.Steps, entry)
	if st.journal == committed {
		if err := e.journal(ctx, r, st.name); err != nil {
			return -1, err
		}
	}
	return len(r.Steps) - 1, nil
}

// close records the outcome of st in its entry i, committing it if the
// policy says so. A failed commit after a failed step leaves the step's error.
func (e *Engine) close(ctx context.Context, r *rekey.Rotation, st *stepDef, i int, ferr error) error {
	if st.journal == atomic || st.journal == unjournaled {
		return nil // an atomic step closes its entry in its own transaction
	}
	endStep(&r.Steps[i], e.now(), ferr)
	if st.journal != committed {
		return nil
	}
	if err := e.journal(ctx, r, st.name); err != nil && ferr == nil {
		return err
	}
	return nil
}

// endStep records when a journal entry ended and how.
func endStep(s *rekey.Step, at time.Time, ferr error) {
	s.Ended, s.Outcome = at, "ok"
	if ferr != nil {
		s.Outcome, s.Detail = "error", ferr.Error()
	}
}

// journal commits the journal of r.
func (e *Engine) journal(ctx context.Context, r *rekey.Rotation, name string) error {
	if err := e.Store.Update(ctx, func(tx rekey.Tx) error { return tx.PutRotation(r) }); err != nil {
		return rekey.Wrap(rekey.ErrorCode(err), err, "journal %s", name)
	}
	return nil
}

// laterIntent is the index in r's journal of the entry of an intent step
// that comes after st in the table, or -1.
func (e *Engine) laterIntent(r *rekey.Rotation, st *stepDef) int {
	after := false
	for i := range steps {
		if &steps[i] == st {
			after = true
			continue
		}
		if after && steps[i].journal == intent {
			if j := lastIndex(r, steps[i].name); j >= 0 {
				return j
			}
		}
	}
	return -1
}

// openIntents journals the intents of r that its create commit did not
// (a rotation journaled by an older rekey), in one commit.
func (e *Engine) openIntents(ctx context.Context, r *rekey.Rotation) error {
	var names []string
	for _, st := range steps {
		if st.journal == intent && !r.Reached(st.name) {
			r.Steps = append(r.Steps, rekey.Step{Name: st.name, Started: e.now()})
			names = append(names, st.name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	return e.journal(ctx, r, strings.Join(names, ", "))
}

func lastIndex(r *rekey.Rotation, step string) int {
	for i := len(r.Steps) - 1; i >= 0; i-- {
		if r.Steps[i].Name == step {
			return i
		}
	}
	return -1
}

// FaultPoint is a place where the engine calls its Fault hook.
type FaultPoint struct {
	Point string // the argument of Fault: "publish:after"
	Step  string // the step it bounds
	Needs Need   // what a rotation must involve to reach it
	// Published: a rotation that crashed here had written its new values
	// to the targets (on the way forward; the rollback's points say false).
	Published bool
	// Recovery is what Recover makes of a rotation that crashed here.
	Recovery Outcome
}

// Outcome is what becomes of a rotation after a crash and Recover.
type Outcome string

// The outcomes.
const (
	NotCreated Outcome = "not created" // no new version exists
	Completed  Outcome = "completed"   // Recover completes it: the new values are current
	Finished   Outcome = "finished"    // it had finished: nothing to recover
	RolledBack Outcome = "rolled back" // Recover finishes rolling it back
)

func (r resume) outcome() Outcome {
	return [...]Outcome{forward: Completed, done: Finished, back: RolledBack}[r]
}

// FaultPoints lists in order, once each, the fault points a rotation
// involving has reaches: those of the steps that need nothing and of the
// steps that need one of has (NeedFailure: the rollback's).
func FaultPoints(has ...Need) []FaultPoint {
	var out []FaultPoint
	seen := map[string]bool{}
	add := func(st *stepDef, published bool, before, after Outcome) {
		if st.needs != NeedNothing && !slices.Contains(has, st.needs) {
			return
		}
		for _, p := range []FaultPoint{
			{Point: st.name + ":before", Step: st.name, Needs: st.needs, Published: published, Recovery: before},
			{Point: st.name + ":after", Step: st.name, Needs: st.needs, Published: published || st.publishes, Recovery: after},
		} {
			if !seen[p.Point] {
				seen[p.Point] = true
				out = append(out, p)
			}
		}
	}
	state, published := NotCreated, false
	for i := range steps {
		st := &steps[i]
		add(st, published, state, st.resume.outcome())
		state, published = st.resume.outcome(), published || st.publishes
	}
	add(&rollbackStep, false, RolledBack, RolledBack)
	return out
}

// StepsHelp describes the steps for `rekey rotate --help`, one paragraph
// per step name, in order.
func StepsHelp() string {
	var b strings.Builder
	seen := map[string]bool{}
	for _, st := range steps {
		if st.help == "" || seen[st.name] {
			continue
		}
		seen[st.name] = true
		for i, line := range strings.Split(st.help, "\n") {
			lead := strings.Repeat(" ", 11)
			if i == 0 {
				lead = "  " + st.name + strings.Repeat(" ", max(1, 9-len(st.name)))
			}
			b.WriteString(lead + line + "\n")
		}
	}
	return b.String()
}

// alreadyMigrated: recovery after a migration that ended moves on.
func alreadyMigrated(_ *Engine, x *run) bool { return migrated(x.r) }
