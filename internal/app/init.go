package app

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/dotenv"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/envfile"
	"github.com/rekeyhq/rekey/internal/sqlite"
	"github.com/rekeyhq/rekey/seal"
)

// InitOptions are what `rekey init` is given.
type InitOptions struct {
	// EnvFile is the .env to inventory.
	EnvFile string
	// Rotated are NAME=YYYY-MM-DD: when NAME was last rotated.
	Rotated []string
	// ImportLog is a rotation log in the runbook's Markdown format.
	ImportLog string
	// Force replaces the environment when rekey.yaml has it already: its
	// targets, derived values and current values (the other environments
	// are untouched; when it is the only one, rekey.yaml and the store are
	// created anew).
	Force bool
	// DetectColumns samples the database of the .env's PostgreSQL URL for
	// columns encrypted with AES-GCM, for the commented reencrypt: stanza.
	DetectColumns bool
	// Passphrase derives the master key from a passphrase, read by
	// NewPassphrase (REKEY_PASSPHRASE or the terminal).
	Passphrase    bool
	NewPassphrase func(envVar, prompt string) ([]byte, error)
	// KeyFile is where to create the master key file ("" = KeyDir).
	KeyFile string
	// PostgresAlternating is --postgres-alternating[=ROLE] ("" = not given,
	// "auto" = the second role's name derived from the URL's user); OnPair
	// hears each pair it sets up.
	PostgresAlternating string
	OnPair              func(PgPair)
}

// Inventory is what init decided and wrote.
type Inventory struct {
	// Config is the rekey.yaml written; ConfigRel and StoreRel are its path
	// and the store's as messages show them.
	Config              *config.Config
	ConfigRel, StoreRel string
	Env                 string
	// Classes are the .env's keys as rekey.Classify sees them, in order.
	Classes []rekey.Class
	// Added are the secrets added to rekey.yaml; Imported the keys whose
	// value is now version 1; Dates the last rotations known.
	Added    []string
	Imported map[string]bool
	Dates    map[string]time.Time
	// KeyFile is the master key file init created ("" = none).
	KeyFile string
	// Warnings are what the operator should know: keys that look like
	// secrets rekey cannot rotate, rotations counted from today.
	Warnings []string
	// Replaced describes the environment init replaced ("" = none);
	// Found what it filled the commented stanzas with.
	Replaced string
	Found    []string
	// Stanzas are the commented stanzas rekey.yaml has (services,
	// checks, sessions, reencrypt), in that order.
	Stanzas []string
	// Counts are the .env's keys by what init did with them.
	Counts InitCounts
}

// InitCounts count the keys of the .env init read: secrets imported whose
// new values rekey generates (generated, database passwords, data keys)
// or that are user-managed, secrets without a value (not imported),
// derived values, and the other variables, left alone.
type InitCounts struct {
	Generated, UserManaged, Empty, Derived, Other int
}

// FaultInitRoleCreated is the point (REKEY_TEST_FAULT, test builds) right
// after init --postgres-alternating created the second role of a pair and
// before it writes anything: a kill -9 there cannot drop the role; the next
// init finds it and uses it (EnsurePair keeps an existing second role
// that can log in).
const FaultInitRoleCreated = "init:role-created"

// initRun is one `rekey init`: read everything and decide before writing
// anything; write rekey.yaml last (its presence means init finished).
type initRun struct {
	s                                  *Session
	o                                  InitOptions
	env, wd, cfgPath, projDir, envPath string
	values                             map[string]string
	classes                            []rekey.Class
	dates                              map[string]time.Time
	periods                            map[string]time.Duration
	existing, cfg                      *config.Config
	added                              []string
	pgAttrs                            map[string]map[string]string
	key                                seal.Key
	kdf                                string
	storeExists                        bool
	// replacing: --force replaces the environment in an inventory that
	// has others (envAt is where it was); fresh: rekey.yaml and the store
	// are created anew (the environment was the only one).
	replacing, fresh bool
	envAt            int
	replacedWhat     string
	found            config.Suggestions
	comments         config.Comments
	// created are the roles --postgres-alternating created: dropped again
	// when a later step fails.
	created createdRoles
}

// Init is `rekey init`: it classifies every key of an existing .env, writes
// rekey.yaml (or adds an environment to it), creates the sealed store and
// its master key, and imports the values as version 1, audited. The store
// stays open in the session. With --postgres-alternating it is all or
// nothing for the database: when a step fails after the second role of a
// pair was created (a store that exists, a --key-file inside the project,
// another pair that fails, rekey.yaml that cannot be written), the roles
// this run created are dropped again (createdRoles.undo), never one that
// existed before.
func (s *Session) Init(ctx context.Context, o InitOptions) (*Inventory, error) {
	s.locked = true // it writes a store and rekey.yaml (Acted)
	r, err := s.readEnvFile(o)
	if err != nil {
		return nil, err
	}
	steps := []func() error{
		r.readDates, r.loadExisting, func() error { return r.addEnvironment(ctx) },
		func() (err error) { r.comments, err = r.commentBlocks(ctx); return err },
		r.masterKey, func() error { return r.createStore(ctx) }, r.writeConfig,
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, r.created.undo(ctx, "init", err)
		}
	}
	return r.inventory(), nil
}

// readEnvFile resolves the paths and reads and classifies the .env.
func (s *Session) readEnvFile(o InitOptions) (*initRun, error) {
	r := &initRun{s: s, o: o, env: s.Opts.EnvName, dates: map[string]time.Time{}, periods: map[string]time.Duration{}}
	if r.env == "" {
		r.env = "production"
	}
	var err error
	if r.wd, err = s.Wd(); err != nil {
		return nil, err
	}
	r.cfgPath = filepath.Join(r.wd, "rekey.yaml")
	if s.Opts.ConfigPath != "" {
		if r.cfgPath, err = s.Abs(s.Opts.ConfigPath); err != nil {
			return nil, err
		}
	}
	r.projDir = filepath.Dir(r.cfgPath)
	if r.envPath, err = s.Abs(o.EnvFile); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(r.envPath)
	if err != nil {
		return nil, rekey.Wrap(rekey.CodeNotFound, err, "read --env-file").WithHint("pass the path of the project's .env")
	}
	f, err := dotenv.Parse(envfile.RelTo(r.wd, r.envPath), data)
	if err != nil {
		return nil, envfile.ParseErr(err)
	}
	r.values = map[string]string{}
	for _, k := range f.Keys() {
		r.values[k], _ = f.Get(k)
	}
	r.classes = rekey.Classify(f.Keys(), r.values)
	return r, nil
}

// readDates reads the last rotations: the rotation log, then --rotated.
func (r *initRun) readDates() error {
	if r.o.ImportLog != "" {
		p, err := r.s.Abs(r.o.ImportLog)
		if err != nil {
			return err
		}
		logData, err := os.ReadFile(p)
		if err != nil {
			return rekey.Wrap(rekey.CodeNotFound, err, "read --import-log")
		}
		last, every, err := rekey.ParseRotationLog(logData)
		if err != nil {
			return rekey.Wrap(rekey.ErrorCode(err), err, "%s", r.o.ImportLog)
		}
		r.dates, r.periods = last, every
	}
	for _, rot := range r.o.Rotated {
		name, day, ok := strings.Cut(rot, "=")
		t, err := time.Parse("2006-01-02", day)
		if !ok || err != nil {
			return rekey.Errorf(rekey.CodeInvalid, "--rotated %q: want NAME=YYYY-MM-DD", rot)
		}
		if _, ok := r.values[name]; !ok {
			return rekey.Errorf(rekey.CodeNotFound, "--rotated %s: no such key in %s", name, r.o.EnvFile)
		}
		r.dates[name] = t
	}
	return nil
}

// loadExisting reads an existing inventory: init adds an environment to
// it, or replaces one with --force (never the others).
func (r *initRun) loadExisting() error {
	existing, err := config.Load(r.cfgPath)
	rel := envfile.RelTo(r.wd, r.cfgPath)
	switch {
	case err == nil:
		i := slices.IndexFunc(existing.Environments, func(e config.Environment) bool { return e.Name == r.env })
		anew := r.o.Force && i >= 0 && len(existing.Environments) == 1
		// Never bless someone else's edit: merge only into what is approved
		// (replacing the only environment keeps nothing of the file).
		if r.s.Opts.Approve != nil && !anew {
			if err := r.s.Opts.Approve(existing); err != nil {
				return err
			}
		}
		r.existing, r.cfg = existing, existing
		if i >= 0 {
			if err := r.replace(existing, i, rel); err != nil {
				return err
			}
		}
	case errors.Is(err, os.ErrNotExist):
		if p := filepath.Join(r.projDir, ".rekey", "rekey.db"); fileExists(p) {
			return rekey.Errorf(rekey.CodeConflict, "a store already exists at %s, without %s", envfile.RelTo(r.wd, p), rel).
				WithHint("restore %s (the store may hold every environment's secrets), or move %s away to start over", rel, envfile.RelTo(r.wd, p))
		}
	case !r.o.Force:
		return ConfigErr(err)
	default:
		if p := filepath.Join(r.projDir, ".rekey", "rekey.db"); fileExists(p) {
			return rekey.Wrap(rekey.ErrorCode(ConfigErr(err)), ConfigErr(err), "--force: init cannot tell which environments %s declares", rel).
				WithHint("fix %s (the error names the line), or move it and %s away to start over", rel, envfile.RelTo(r.wd, p))
		}
		r.s.warnf("replacing %s, which does not parse", rel)
	}
	if r.cfg == nil {
		r.cfg = &config.Config{Path: r.cfgPath, Dir: r.projDir, Version: 1, Store: config.Store{Path: filepath.Join(r.projDir, ".rekey", "rekey.db"), MasterKey: "env"}}
	}
	return nil
}

// replace decides what to do with environment i of the existing inventory,
// which init was asked for again: refuse without --force, naming what it
// would replace; with it, take it out of the inventory (to be added from
// the .env) or, when it is the only one, start anew.
func (r *initRun) replace(existing *config.Config, i int, rel string) error {
	e := existing.Environments[i]
	var targets []string
	for _, t := range e.Targets {
		targets = append(targets, t.Name+" ("+envfile.RelTo(r.wd, t.Path)+")")
	}
	only := len(existing.Environments) == 1
	what := fmt.Sprintf("environment %s: its targets %s, its derived values and the current values of its secrets (the old ones stay in the store's history)", r.env, strings.Join(targets, ", "))
	if only {
		what = fmt.Sprintf("environment %s, the only one: %s and the store %s are created anew (its secrets' history and audit log are lost unless backed up)",
			r.env, rel, envfile.RelTo(r.wd, existing.Store.Path))
	}
	if !r.o.Force {
		var others []string
		for _, o := range existing.Environments {
			if o.Name != r.env {
				others = append(others, o.Name)
			}
		}
		hint := "pass --force to replace " + what
		if len(others) > 0 {
			hint += "; environments " + strings.Join(others, ", ") + " stay as they are"
		}
		return rekey.Errorf(rekey.CodeConflict, "%s already has environment %s", rel, r.env).
			WithHint("%s; or pass --environment NAME to add another", hint)
	}
	r.replacedWhat = what
	if only {
		r.fresh, r.existing, r.cfg = true, nil, nil
		return nil
	}
	r.replacing, r.envAt = true, i
	existing.Environments = slices.Delete(existing.Environments, i, i+1)
	return nil
}

// addEnvironment adds the environment, its .env target, the secrets the
// inventory does not have yet and the derived values to the config.
func (r *initRun) addEnvironment(ctx context.Context) error {
	cfg := r.cfg
	env := config.Environment{Name: r.env, Targets: []config.Target{{Name: "app", Type: "dotenv", Path: r.envPath}}}
	var derived []rekey.Derived
	for _, c := range r.classes {
		switch {
		case c.Secret:
			sp := c.Spec
			if p, ok := r.periods[sp.Name]; ok {
				sp.Period = p
			}
			if _, ok := cfg.Secret(sp.Name); ok {
				continue
			}
			cfg.Secrets = append(cfg.Secrets, sp)
			r.added = append(r.added, sp.Name)
		case c.Derived != nil:
			derived = append(derived, *c.Derived)
		}
	}
	if len(cfg.Secrets) == 0 {
		return rekey.Errorf(rekey.CodeInvalid, "%s holds no secret rekey recognises", r.o.EnvFile).WithHint("add secrets to rekey.yaml by hand (see the README)")
	}
	postgresFromURLs(cfg.Secrets, derived)
	var err error
	r.pgAttrs, err = initPostgresAlternating(ctx, r.o.PostgresAlternating, len(cfg.Environments) > 0, cfg.Secrets, derived, r.values, r.o.OnPair, &r.created)
	if err != nil {
		return err
	}
	if f := r.s.Opts.Fault; f != nil && len(r.created.list) > 0 {
		f(FaultInitRoleCreated) // test builds: a kill -9 here leaves the role, nothing else
	}
	if len(cfg.Environments) == 0 {
		cfg.Derived = derived
	} else {
		env.Derived = derived
	}
	if r.replacing {
		cfg.Environments = slices.Insert(cfg.Environments, r.envAt, env)
	} else {
		cfg.Environments = append(cfg.Environments, env)
	}
	return nil
}

// postgresFromURLs gives each PostgreSQL password without settings its
// role, host and database: those of the first postgres:// URL that embeds
// it (not of a keyword-form DSN).
func postgresFromURLs(specs []rekey.Spec, derived []rekey.Derived) {
	for i := range specs {
		sp := &specs[i]
		if sp.Kind != rekey.KindPostgresPassword || sp.Postgres != nil {
			continue
		}
		for _, d := range derived {
			src := d.Template.Source()
			if !strings.HasPrefix(src, "postgres://") && !strings.HasPrefix(src, "postgresql://") {
				continue
			}
			for _, ref := range d.Template.Refs() {
				if ref == sp.Name && sp.Postgres == nil {
					sp.Postgres = &rekey.PostgresSpec{URLFrom: d.Name, ChangedBy: "self", Strategy: "single"}
				}
			}
		}
	}
}

// masterKey finds the key of the existing store, or makes the new one's:
// REKEY_MASTER_KEY, a passphrase, or a new key file outside the project.
func (r *initRun) masterKey() error {
	cfg := r.cfg
	r.storeExists = fileExists(cfg.Store.Path)
	if r.storeExists && r.existing != nil {
		k, err := r.s.MasterKey(cfg)
		r.key = k
		return err
	}
	switch {
	case r.s.Getenv("REKEY_MASTER_KEY") != "":
		k, err := seal.ParseKey(r.s.Getenv("REKEY_MASTER_KEY"))
		if err != nil {
			return rekey.Wrap(rekey.CodeInvalid, err, "REKEY_MASTER_KEY").WithHint("it must be base64 of 32 bytes, as `openssl rand -base64 32` prints")
		}
		r.key, cfg.Store.MasterKey = k, "env"
	case r.o.Passphrase:
		p, err := seal.NewKDFParams()
		if err != nil {
			return err
		}
		pass, err := r.o.NewPassphrase("REKEY_PASSPHRASE", "New passphrase for the rekey store: ")
		if err != nil {
			return err
		}
		r.key, r.kdf, cfg.Store.MasterKey = seal.KeyFromPassphrase(pass, p), p.String(), "passphrase"
		seal.Wipe(pass)
	default:
		k, err := seal.GenerateKey()
		if err != nil {
			return err
		}
		r.key = k
		path := r.o.KeyFile
		if path == "" {
			dir, err := r.s.KeyDir()
			if err != nil {
				return err
			}
			path = filepath.Join(dir, filepath.Base(r.projDir)+"-"+k.ID()+".key")
		} else if path, err = r.s.Abs(path); err != nil {
			return err
		}
		if inside(r.projDir, path) {
			return rekey.Errorf(rekey.CodeUnsafe, "refusing to put the master key inside the project (%s)", path).WithHint("choose a --key-file outside %s, where it cannot be committed", r.projDir)
		}
		cfg.Store.MasterKey = "file:" + path
	}
	return nil
}

// createStore writes the key file, creates the store (or opens the
// existing one, for another environment) and imports the values as
// version 1, audited. The session keeps the store open.
func (r *initRun) createStore(ctx context.Context) error {
	cfg := r.cfg
	if strings.HasPrefix(cfg.Store.MasterKey, "file:") && !(r.storeExists && r.existing != nil) {
		if err := seal.WriteKeyFile(strings.TrimPrefix(cfg.Store.MasterKey, "file:"), r.key); err != nil {
			return rekey.Wrap(rekey.CodeConflict, err, "write master key file")
		}
	}
	if r.storeExists && r.existing == nil {
		if !r.fresh {
			return rekey.Errorf(rekey.CodeConflict, "a store already exists at %s", envfile.RelTo(r.wd, cfg.Store.Path)).WithHint("pass --force to replace it (its secrets are lost unless backed up)")
		}
		if err := os.Remove(cfg.Store.Path); err != nil {
			return err
		}
		r.storeExists = false
	}
	var st *sqlite.DB
	var err error
	if r.storeExists {
		st, err = sqlite.Open(ctx, cfg.Store.Path, r.key, r.s.anchorOpts()...)
	} else {
		st, err = sqlite.Create(ctx, cfg.Store.Path, r.key, r.kdf, r.s.anchorOpts()...)
	}
	if err != nil {
		return err
	}
	st.Now = r.s.Now
	r.s.store = st
	return st.Update(ctx, r.importValues)
}

// importValues imports every secret with a value as its current version 1.
func (r *initRun) importValues(tx rekey.Tx) error {
	actor, now := r.s.Actor(), r.s.Now()
	detail := "inventory of " + envfile.RelTo(r.projDir, r.envPath)
	if r.replacing {
		detail = "environment replaced (--force) by the inventory of " + envfile.RelTo(r.projDir, r.envPath)
		if err := r.supersede(tx); err != nil {
			return err
		}
	}
	if _, err := tx.Audit(rekey.AuditEntry{Actor: actor, Action: "init", Env: r.env, Outcome: "ok", Detail: detail}); err != nil {
		return err
	}
	for _, c := range r.classes {
		if !c.Secret || r.values[c.Key] == "" {
			continue
		}
		created := now
		note := "imported by rekey init; last rotation date unknown"
		if d, ok := r.dates[c.Key]; ok {
			created, note = d, "imported by rekey init"
		}
		v, err := tx.AddVersion(r.env, c.Key, rekey.NewVersion{Value: rekey.NewValueString(r.values[c.Key]), Label: rekey.LabelCurrent, Source: rekey.SourceImported, Note: note, CreatedAt: created, Attrs: r.pgAttrs[c.Key]})
		if err != nil {
			return err
		}
		if _, err := tx.Audit(rekey.AuditEntry{Actor: actor, Action: "import", Env: r.env, Secret: c.Key, Version: v.N, Fingerprint: v.Fingerprint, Outcome: "ok"}); err != nil {
			return err
		}
	}
	return nil
}

// supersede prepares the replacement of the environment: it refuses while
// a rotation of it is unfinished, and takes the current label off the
// secrets the new .env does not hold (their versions stay in the history).
func (r *initRun) supersede(tx rekey.Tx) error {
	open, err := tx.Rotations(r.env, true)
	if err != nil {
		return err
	}
	if len(open) > 0 {
		return rekey.Errorf(rekey.CodeConflict, "environment %s has an unfinished rotation (%s)", r.env, open[0].ID).
			WithHint("run `rekey recover -e %s` first, then init again", r.env)
	}
	cur, err := tx.AllLabeled(r.env, rekey.LabelCurrent)
	if err != nil {
		return err
	}
	for _, name := range slices.Sorted(maps.Keys(cur)) {
		if r.values[name] != "" && slices.ContainsFunc(r.classes, func(c rekey.Class) bool { return c.Key == name && c.Secret }) {
			continue // imported again below: the label moves to the new version
		}
		if err := tx.SetLabel(r.env, name, 0, rekey.LabelCurrent); err != nil {
			return err
		}
	}
	return nil
}

// writeConfig ignores .rekey/ in git, then writes rekey.yaml and approves it.
func (r *initRun) writeConfig() error {
	if err := ensureGitignore(r.projDir, ".rekey/"); err != nil {
		r.s.warnf("could not add .rekey/ to .gitignore: %v", err)
	}
	text, err := config.MarshalWith(r.cfg, r.comments)
	if err != nil {
		return err
	}
	if err := dotenv.WriteFileAtomic(r.cfgPath, text, 0o644); err != nil {
		return rekey.Wrap(rekey.CodeInternal, err, "write rekey.yaml")
	}
	r.s.ApproveWritten(r.cfgPath, text)
	return nil
}

// inventory is what the run decided, for the command to tell.
func (r *initRun) inventory() *Inventory {
	inv := &Inventory{Config: r.cfg, ConfigRel: envfile.RelTo(r.wd, r.cfgPath), StoreRel: envfile.RelTo(r.wd, r.cfg.Store.Path), Env: r.env,
		Classes: r.classes, Added: r.added, Imported: map[string]bool{}, Dates: r.dates, Replaced: r.replacedWhat, Found: describeFound(r.found), Stanzas: stanzaNames(r.comments)}
	if p, ok := strings.CutPrefix(r.cfg.Store.MasterKey, "file:"); ok && !(r.storeExists && r.existing != nil) {
		inv.KeyFile = p
	}
	for _, c := range r.classes {
		switch {
		case c.Secret && r.values[c.Key] == "":
			inv.Counts.Empty++
		case c.Secret && c.Spec.Kind == rekey.KindManual:
			inv.Counts.UserManaged++
		case c.Secret:
			inv.Counts.Generated++
		case c.Derived != nil:
			inv.Counts.Derived++
		default:
			inv.Counts.Other++
		}
		if c.Secret && r.values[c.Key] != "" {
			inv.Imported[c.Key] = true
		}
		if c.Warning != "" {
			inv.Warnings = append(inv.Warnings, c.Warning)
		}
	}
	for _, c := range r.classes {
		if _, ok := r.dates[c.Key]; inv.Imported[c.Key] && !ok && c.Spec.Kind != rekey.KindManual {
			inv.Warnings = append(inv.Warnings, "last rotation of "+c.Key+" unknown: counting from today (pass --rotated "+c.Key+"=YYYY-MM-DD)")
		}
	}
	return inv
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func inside(dir, path string) bool {
	r, err := filepath.Rel(dir, path)
	return err == nil && r != ".." && !strings.HasPrefix(r, ".."+string(filepath.Separator))
}

// ensureGitignore adds line to dir/.gitignore unless it is there.
func ensureGitignore(dir, line string) error {
	p := filepath.Join(dir, ".gitignore")
	data, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, l := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(l) == line || strings.TrimSpace(l) == strings.TrimSuffix(line, "/") {
			return nil
		}
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		data = append(data, '\n')
	}
	data = append(data, line+"\n"...)
	return dotenv.WriteFileAtomic(p, data, 0o644)
}

// KeyDir is where master key files go: $XDG_CONFIG_HOME/rekey/keys or
// ~/.config/rekey/keys.
func (s *Session) KeyDir() (string, error) {
	if x := s.Getenv("XDG_CONFIG_HOME"); filepath.IsAbs(x) {
		return filepath.Join(x, "rekey", "keys"), nil
	}
	return seal.DefaultKeyDir()
}
