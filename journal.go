package rekey

// Step names of the rotation journal (Rotation.Steps). What a stored journal
// means is a contract with every rekey that wrote one (internal/engine's
// Recover reads it):
//   - create: the new versions are sealed (pending); the same commit opens
//     the publish entry, the intent to go forward;
//   - apply, publish, stop, migrate, verify: the step started (and, with an
//     outcome, ended); a migrate entry with outcome "ok" means the data
//     moved, so it is not migrated again and a rollback keeps that key;
//   - a running rotation with a publish (or, from older rekeys, an apply)
//     entry is completed by recovery; one with a rollback entry is rolled
//     back; one with neither is abandoned;
//   - finish, rollback: the rotation ended (state done, failed or rolled-back).
const (
	StepCreate   = "create"
	StepApply    = "apply"
	StepPublish  = "publish"
	StepVerify   = "verify"
	StepFinish   = "finish"
	StepRollback = "rollback"
	StepStop     = "stop"    // maintenance mode: consumers stopped
	StepMigrate  = "migrate" // data moved to the new key (re-encryption)
)
