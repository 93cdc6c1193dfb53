package rekey

import (
	"context"
	"time"
)

// Label marks the role of a version. At most one version of a secret holds
// each label.
type Label string

// The labels (AWS Secrets Manager's model).
const (
	LabelNone     Label = ""
	LabelPending  Label = "pending"
	LabelCurrent  Label = "current"
	LabelPrevious Label = "previous"
)

// Source says where a version's value came from.
type Source string

// The sources.
const (
	SourceGenerated Source = "generated" // drawn by rekey's generator
	SourceImported  Source = "imported"  // read from an existing .env by `rekey init`
	SourceManual    Source = "manual"    // given by a person with `rekey set`
	SourceRollback  Source = "rollback"  // a copy of an earlier version, by `rekey rollback`
)

// Version is one value of a secret, without the value.
type Version struct {
	Env         string
	Name        string
	N           int // 1, 2, 3 ...
	Label       Label
	CreatedAt   time.Time
	Fingerprint string // HMAC fingerprint, safe to print
	Source      Source
	RotationID  string // the rotation that created it, if any
	Note        string // e.g. "rollback of v3"; never a value
	// Attrs are small non-secret facts about the version, such as the login
	// role an alternating PostgreSQL password belongs to ("role"). Templates
	// reach them as {{ NAME.attr }}.
	Attrs map[string]string
}

// NewVersion is what a caller gives AddVersion.
type NewVersion struct {
	Value      Value
	Label      Label
	Source     Source
	RotationID string
	Note       string
	Attrs      map[string]string
	CreatedAt  time.Time // zero = now
}

// Mode is why a rotation runs; it decides what happens when verification fails.
type Mode string

// The rotation modes.
const (
	ModeScheduled Mode = "scheduled" // --due: roll back on failure
	ModeManual    Mode = "manual"    // rotate NAME, --all: roll back on failure
	ModeEmergency Mode = "emergency" // never goes back to a possibly exposed value
	ModeRollback  Mode = "rollback"  // rekey rollback NAME
	ModeSet       Mode = "set"       // rekey set NAME (a person supplied the value)
)

// RotationState is where a rotation is.
type RotationState string

// The rotation states. Only StateRunning is unfinished.
const (
	StateRunning    RotationState = "running"
	StateDone       RotationState = "done"
	StateRolledBack RotationState = "rolled-back" // abandoned: targets and labels back on the old values
	StateFailed     RotationState = "failed"      // finished with the new values but verification failed (emergency)
)

// Step is one journal entry of a rotation.
type Step struct {
	Name    string    `json:"name"`
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended,omitzero"`
	Outcome string    `json:"outcome,omitempty"` // "ok", "skipped", "error"
	Detail  string    `json:"detail,omitempty"`  // never a value
}

// Rotation is a journaled rotation of one or more secrets of one environment.
type Rotation struct {
	ID      string
	Env     string
	Mode    Mode
	State   RotationState
	Actor   string
	Secrets map[string]int // secret name → pending version number
	Steps   []Step
	Started time.Time
	Ended   time.Time
	Error   string // why it ended as it did; never a value
}

// LastStep is the last journal entry, or a zero Step.
func (r *Rotation) LastStep() Step {
	if len(r.Steps) == 0 {
		return Step{}
	}
	return r.Steps[len(r.Steps)-1]
}

// Reached reports whether a step of that name was started.
func (r *Rotation) Reached(step string) bool {
	for _, s := range r.Steps {
		if s.Name == step {
			return true
		}
	}
	return false
}

// AuditEntry is one record of the append-only, hash-chained audit log.
// It never holds a value: only its fingerprint.
type AuditEntry struct {
	Seq         int64     `json:"seq"`
	Time        time.Time `json:"time"`
	Actor       string    `json:"actor"`
	Action      string    `json:"action"`
	Env         string    `json:"environment,omitempty"`
	Secret      string    `json:"secret,omitempty"`
	Version     int       `json:"version,omitempty"`
	Fingerprint string    `json:"fingerprint,omitempty"`
	Outcome     string    `json:"outcome"`
	Detail      string    `json:"detail,omitempty"`
	PrevHash    string    `json:"prev_hash"`
	Hash        string    `json:"hash"`
}

// AuditFilter selects audit entries.
type AuditFilter struct {
	Env    string
	Secret string
	Since  time.Time
	Limit  int
}

// Store keeps sealed versions, rotations and the audit log. Implementations:
// sqlite (embedded, the default). Every implementation passes storetest.
//
// Update runs fn in one transaction that is durable when Update returns nil;
// if fn or the commit fails, nothing of it is kept. An audit record appended
// inside the transaction is therefore written if and only if the change is.
type Store interface {
	View(ctx context.Context, fn func(Tx) error) error
	Update(ctx context.Context, fn func(Tx) error) error
	// Fingerprint is the HMAC fingerprint of a value under the store's fingerprint key.
	Fingerprint(v Value) string
	// RotateMasterKey re-seals every value and internal key under the new master
	// key in one transaction. Secrets are unchanged.
	RotateMasterKey(ctx context.Context, newKey MasterKey) error
	// VerifyAudit checks the whole hash chain; the error names the first broken entry.
	VerifyAudit(ctx context.Context) (int, error)
	Close() error
}

// MasterKey is an opaque master key handle (implemented by seal.Key).
type MasterKey interface {
	ID() string
}

// Tx is a store transaction. Methods return ErrNotFound (errors.Is) for a
// missing secret or version, ErrCorrupt when a sealed value fails to open.
type Tx interface {
	Environments() ([]string, error)
	// Names lists the secrets of env that have at least one version.
	Names(env string) ([]string, error)
	// Versions lists a secret's versions, oldest first.
	Versions(env, name string) ([]Version, error)
	// Labeled returns the version holding a label.
	Labeled(env, name string, l Label) (Version, error)
	// Latest returns the newest version of every secret of env that holds l (current: the status view).
	AllLabeled(env string, l Label) (map[string]Version, error)
	// Value unseals a version's value.
	Value(env, name string, n int) (Value, error)
	// AddVersion appends the next version number (never one used before, even
	// if pruned). If nv.Label is set, the label moves to it.
	AddVersion(env, name string, nv NewVersion) (Version, error)
	// SetLabel moves label l to version n (n == 0 removes l from the secret).
	SetLabel(env, name string, n int, l Label) error
	// SetAttrs replaces the attributes of version n (the grace deadline of a
	// superseded version, and whether it has expired).
	SetAttrs(env, name string, n int, attrs map[string]string) error
	// Prune deletes unlabeled versions beyond the newest keep; it never deletes a
	// labeled version, nor one marked exposed (AttrExposed).
	Prune(env, name string, keep int) (int, error)
	// PutRotation inserts or replaces a rotation.
	PutRotation(r *Rotation) error
	Rotation(id string) (*Rotation, error)
	// PruneRotations deletes the finished rotations of env beyond the newest
	// keep (by start); running ones are never deleted. The audit log keeps the
	// permanent record; the journal is needed only until a rotation ends.
	PruneRotations(env string, keep int) (int, error)
	// Rotations lists rotations of env (all envs if env == ""), newest first; running only if unfinished.
	Rotations(env string, unfinished bool) ([]*Rotation, error)
	// Audit appends an entry; Seq, PrevHash and Hash are assigned.
	Audit(e AuditEntry) (AuditEntry, error)
	AuditLog(f AuditFilter) ([]AuditEntry, error)

	// PutIncident inserts or replaces an incident (by ID; ID and Env required).
	PutIncident(i *Incident) error
	// Incident returns an incident (ErrNotFound if there is none).
	Incident(id string) (*Incident, error)
	// Incidents lists the incidents of env (all envs if env == ""), newest
	// first (by OpenedAt); only the open ones if open.
	Incidents(env string, open bool) ([]*Incident, error)

	// Enqueue records a notification in the outbox and returns it with its
	// ID. An item whose IdempotencyKey (required) is already in the outbox
	// is not added again: Enqueue returns the existing one. A zero Created
	// is now; a zero NextAttempt is Created (due at once); LastError is cut
	// to MaxLastError bytes.
	Enqueue(o OutboxItem) (OutboxItem, error)
	// Outbox lists the items f selects, oldest first (by ID).
	Outbox(f OutboxFilter) ([]OutboxItem, error)
	// MarkAttempt records a delivery attempt of item id: Attempts grows by
	// one; delivered (zero: it failed), lastErr (cut to MaxLastError) and
	// next replace Delivered, LastError and NextAttempt. ErrNotFound if there
	// is no such item.
	MarkAttempt(id int64, delivered time.Time, lastErr string, next time.Time) error
}

// EachVersion calls fn with every version of every secret of every
// environment tx holds (environments and names in order, versions oldest
// first), stopping at the first error.
func EachVersion(tx Tx, fn func(Version) error) error {
	envs, err := tx.Environments()
	if err != nil {
		return err
	}
	for _, env := range envs {
		names, err := tx.Names(env)
		if err != nil {
			return err
		}
		for _, name := range names {
			vs, err := tx.Versions(env, name)
			if err != nil {
				return err
			}
			for _, v := range vs {
				if err := fn(v); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
