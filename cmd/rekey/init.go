package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/dotenv"
	"github.com/rekeyhq/rekey/seal"
	"github.com/rekeyhq/rekey/internal/sqlite"
	"github.com/spf13/cobra"
)

type initOptions struct {
	envFile    string
	rotated    []string
	importLog  string
	force      bool
	passphrase bool
	keyFile    string
	// pgAlternating is --postgres-alternating[=ROLE] ("auto" without a value).
	pgAlternating string
}

func (a *app) initCommand() *cobra.Command {
	var o initOptions
	c := &cobra.Command{
		Use:   "init --env-file PATH [--environment NAME] [--rotated NAME=YYYY-MM-DD]... [--import-log FILE] [--force]",
		Short: "Inventory an existing .env: classify every key, write rekey.yaml, import values as version 1",
		Long: `init reads an existing .env and classifies every key: generated secret
(JWT_SECRET), database password (DATABASE_PASSWORD), data-encryption key
(ENCRYPTION_KEY), user-managed third-party key (ANTHROPIC_API_KEY, or any value
with a provider prefix such as sk-), derived value (a DATABASE_URL that embeds
the password) or not a secret (RUST_LOG, PORT). It writes rekey.yaml in the
working directory, creates the sealed store .rekey/rekey.db (0600, added to
.gitignore) and imports the current values as version 1.

The master key is REKEY_MASTER_KEY when set; with --passphrase it is derived
from REKEY_PASSPHRASE (or a prompt; at least 12 characters, not a
repetition) with argon2id; otherwise init creates a
key file (0600) outside the project and prints its path: back it up.

Last-rotation dates come from --rotated NAME=YYYY-MM-DD or from a rotation log
in the runbook's Markdown format (--import-log, its "Rotation Schedule" table).
Running init for a second environment adds it to the existing rekey.yaml.
init never prompts unless --passphrase is given on a terminal.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runInit(cmd.Context(), o) },
	}
	c.Flags().StringVar(&o.envFile, "env-file", "", "the .env file to inventory (required)")
	c.Flags().StringArrayVar(&o.rotated, "rotated", nil, "NAME=YYYY-MM-DD: when NAME was last rotated (repeatable)")
	c.Flags().StringVar(&o.importLog, "import-log", "", "a rotation log in the runbook's Markdown format to read last-rotation dates from")
	c.Flags().BoolVar(&o.force, "force", false, "replace an existing rekey.yaml and store (their secrets are lost unless backed up)")
	c.Flags().BoolVar(&o.passphrase, "passphrase", false, "derive the master key from a passphrase (REKEY_PASSPHRASE or a prompt)")
	c.Flags().StringVar(&o.keyFile, "key-file", "", "where to create the master key file (default: ~/.config/rekey/keys/PROJECT-ID.key)")
	c.Flags().StringVar(&o.pgAlternating, "postgres-alternating", "", "set up the alternating strategy for the database password: create the second login role (ROLE, default derived from the URL's user: app_blue -> app_green) as a copy of the URL's role")
	c.Flags().Lookup("postgres-alternating").NoOptDefVal = "auto"
	_ = c.MarkFlagRequired("env-file")
	return c
}

func (a *app) runInit(ctx context.Context, o initOptions) error {
	envName := a.envName
	if envName == "" {
		envName = "production"
	}
	wd, err := a.wd()
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(wd, "rekey.yaml")
	if a.cfgPath != "" {
		if cfgPath, err = a.abs(a.cfgPath); err != nil {
			return err
		}
	}
	projDir := filepath.Dir(cfgPath)
	envPath, err := a.abs(o.envFile)
	if err != nil {
		return err
	}

	// Read everything and decide before writing anything.
	data, err := os.ReadFile(envPath)
	if err != nil {
		return rekey.Wrap(rekey.CodeNotFound, err, "read --env-file").WithHint("pass the path of the project's .env")
	}
	f, err := dotenv.Parse(relTo(wd, envPath), data)
	if err != nil {
		return dotenvErr(err)
	}
	values := map[string]string{}
	for _, k := range f.Keys() {
		values[k], _ = f.Get(k)
	}
	classes := rekey.Classify(f.Keys(), values)

	dates := map[string]time.Time{}
	periods := map[string]time.Duration{}
	if o.importLog != "" {
		p, err := a.abs(o.importLog)
		if err != nil {
			return err
		}
		logData, err := os.ReadFile(p)
		if err != nil {
			return rekey.Wrap(rekey.CodeNotFound, err, "read --import-log")
		}
		last, every, err := rekey.ParseRotationLog(logData)
		if err != nil {
			return rekey.Wrap(rekey.ErrorCode(err), err, "%s", o.importLog)
		}
		dates, periods = last, every
	}
	for _, r := range o.rotated {
		name, day, ok := strings.Cut(r, "=")
		t, err := time.Parse("2006-01-02", day)
		if !ok || err != nil {
			return rekey.Errorf(rekey.CodeInvalid, "--rotated %q: want NAME=YYYY-MM-DD", r)
		}
		if _, ok := values[name]; !ok {
			return rekey.Errorf(rekey.CodeNotFound, "--rotated %s: no such key in %s", name, o.envFile)
		}
		dates[name] = t
	}

	// Existing inventory: add an environment, or refuse without --force.
	var cfg *config.Config
	existing, err := config.Load(cfgPath)
	switch {
	case err == nil && !o.force:
		// Never bless someone else's edit: merge only into what is approved.
		if err := a.requireApproval(existing); err != nil {
			return err
		}
		if _, ok := existing.Environment(envName); ok {
			return rekey.Errorf(rekey.CodeConflict, "%s already has environment %s", relTo(wd, cfgPath), envName).
				WithHint("pass --force to replace the inventory and the store (their secrets are lost unless backed up), or --environment to add another")
		}
		cfg = existing
	case err == nil && o.force:
	case errors.Is(err, os.ErrNotExist):
	default:
		if !o.force {
			return configErr(err)
		}
	}

	if cfg == nil {
		cfg = &config.Config{Path: cfgPath, Dir: projDir, Version: 1, Store: config.Store{Path: filepath.Join(projDir, ".rekey", "rekey.db"), MasterKey: "env"}}
	}
	env := config.Environment{Name: envName, Targets: []config.Target{{Name: "app", Type: "dotenv", Path: envPath}}}
	var added []string
	var derived []rekey.Derived
	for _, c := range classes {
		switch {
		case c.Secret:
			sp := c.Spec
			if p, ok := periods[sp.Name]; ok {
				sp.Period = p
			}
			if existingSpec, ok := cfg.Secret(sp.Name); ok {
				_ = existingSpec
				continue
			}
			cfg.Secrets = append(cfg.Secrets, sp)
			added = append(added, sp.Name)
		case c.Derived != nil:
			derived = append(derived, *c.Derived)
		}
	}
	if len(cfg.Secrets) == 0 {
		return rekey.Errorf(rekey.CodeInvalid, "%s holds no secret rekey recognises", o.envFile).WithHint("add secrets to rekey.yaml by hand (see the README)")
	}
	// Postgres: the password's role, host and database come from the first
	// postgres:// URL that embeds it (not from a keyword-form DSN).
	for i := range cfg.Secrets {
		sp := &cfg.Secrets[i]
		if sp.Kind == rekey.KindPostgresPassword && sp.Postgres == nil {
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
	pgAttrs, err := a.initPostgresAlternating(ctx, o.pgAlternating, len(cfg.Environments) > 0, cfg.Secrets, derived, values)
	if err != nil {
		return err
	}
	if len(cfg.Environments) == 0 {
		cfg.Derived = derived
	} else {
		env.Derived = derived
	}
	cfg.Environments = append(cfg.Environments, env)

	// Master key.
	var key seal.Key
	var kdf string
	storeExists := fileExists(cfg.Store.Path)
	if storeExists && !o.force && existing != nil {
		k, err := a.masterKey(cfg)
		if err != nil {
			return err
		}
		key = k
	} else {
		switch {
		case a.getenv("REKEY_MASTER_KEY") != "":
			k, err := seal.ParseKey(a.getenv("REKEY_MASTER_KEY"))
			if err != nil {
				return rekey.Wrap(rekey.CodeInvalid, err, "REKEY_MASTER_KEY").WithHint("it must be base64 of 32 bytes, as `openssl rand -base64 32` prints")
			}
			key, cfg.Store.MasterKey = k, "env"
		case o.passphrase:
			p, err := seal.NewKDFParams()
			if err != nil {
				return err
			}
			pass, err := a.newPassphrase("REKEY_PASSPHRASE", "New passphrase for the rekey store: ")
			if err != nil {
				return err
			}
			key, kdf, cfg.Store.MasterKey = seal.KeyFromPassphrase(pass, p), p.String(), "passphrase"
			seal.Wipe(pass)
		default:
			k, err := seal.GenerateKey()
			if err != nil {
				return err
			}
			key = k
			path := o.keyFile
			if path == "" {
				dir, err := a.keyDir()
				if err != nil {
					return err
				}
				path = filepath.Join(dir, filepath.Base(projDir)+"-"+k.ID()+".key")
			} else if path, err = a.abs(path); err != nil {
				return err
			}
			if inside(projDir, path) {
				return rekey.Errorf(rekey.CodeUnsafe, "refusing to put the master key inside the project (%s)", path).WithHint("choose a --key-file outside %s, where it cannot be committed", projDir)
			}
			cfg.Store.MasterKey = "file:" + path
		}
	}

	// Write: key file, store, imports, .gitignore, rekey.yaml (last: its presence means init finished).
	if strings.HasPrefix(cfg.Store.MasterKey, "file:") && !(storeExists && existing != nil && !o.force) {
		if err := seal.WriteKeyFile(strings.TrimPrefix(cfg.Store.MasterKey, "file:"), key); err != nil {
			return rekey.Wrap(rekey.CodeConflict, err, "write master key file")
		}
	}
	var st *sqlite.DB
	if storeExists && (o.force || existing == nil) {
		if !o.force {
			return rekey.Errorf(rekey.CodeConflict, "a store already exists at %s", relTo(wd, cfg.Store.Path)).WithHint("pass --force to replace it (its secrets are lost unless backed up)")
		}
		if err := os.Remove(cfg.Store.Path); err != nil {
			return err
		}
		storeExists = false
	}
	if storeExists {
		st, err = sqlite.Open(ctx, cfg.Store.Path, key, a.anchorOpts()...)
	} else {
		st, err = sqlite.Create(ctx, cfg.Store.Path, key, kdf, a.anchorOpts()...)
	}
	if err != nil {
		return err
	}
	st.Now = a.now
	a.store = st
	now := a.now()
	err = st.Update(ctx, func(tx rekey.Tx) error {
		if _, err := tx.Audit(rekey.AuditEntry{Actor: a.actor(), Action: "init", Env: envName, Outcome: "ok", Detail: "inventory of " + relTo(projDir, envPath)}); err != nil {
			return err
		}
		for _, c := range classes {
			if !c.Secret || values[c.Key] == "" {
				continue
			}
			created := now
			note := "imported by rekey init; last rotation date unknown"
			if d, ok := dates[c.Key]; ok {
				created, note = d, "imported by rekey init"
			}
			v, err := tx.AddVersion(envName, c.Key, rekey.NewVersion{Value: rekey.NewValueString(values[c.Key]), Label: rekey.LabelCurrent, Source: rekey.SourceImported, Note: note, CreatedAt: created, Attrs: pgAttrs[c.Key]})
			if err != nil {
				return err
			}
			if _, err := tx.Audit(rekey.AuditEntry{Actor: a.actor(), Action: "import", Env: envName, Secret: c.Key, Version: v.N, Fingerprint: v.Fingerprint, Outcome: "ok"}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := ensureGitignore(projDir, ".rekey/"); err != nil {
		a.warnf("could not add .rekey/ to .gitignore: %v", err)
	}
	text, err := config.Marshal(cfg)
	if err != nil {
		return err
	}
	if err := dotenv.WriteFileAtomic(cfgPath, text, 0o644); err != nil {
		return rekey.Wrap(rekey.CodeInternal, err, "write rekey.yaml")
	}
	a.approveWritten(cfgPath, text)

	// Tell what was decided.
	w := tabwriter.NewWriter(a.out(), 2, 4, 2, ' ', 0)
	fmt.Fprintf(w, "KEY\tKIND\tEVERY\tLAST ROTATED\tWHY\n")
	for _, c := range classes {
		kind, every, last := "-", "-", "-"
		if c.Secret {
			kind = string(c.Spec.Kind)
			sp, _ := cfg.Secret(c.Key)
			if sp.Period > 0 {
				every = config.FormatDuration(sp.Period)
			}
			if d, ok := dates[c.Key]; ok {
				last = d.Format("2006-01-02")
			} else if values[c.Key] != "" {
				last = "unknown (today)"
			}
		} else if c.Derived != nil {
			kind = "derived"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", c.Key, kind, every, last, c.Reason)
	}
	w.Flush()
	fmt.Fprintf(a.out(), "\nwrote %s (environment %s, %d secrets) and the sealed store %s\n", relTo(wd, cfgPath), envName, len(added), relTo(wd, cfg.Store.Path))
	if p, ok := strings.CutPrefix(cfg.Store.MasterKey, "file:"); ok && !(storeExists && existing != nil) {
		fmt.Fprintf(a.out(), "master key: %s\n", p)
		a.warnf("back up the master key file %s now: without it the store cannot be opened", p)
	}
	for _, c := range classes {
		if c.Warning != "" {
			a.warnf("%s", c.Warning)
		}
	}
	for _, c := range classes {
		if c.Secret && values[c.Key] != "" {
			if _, ok := dates[c.Key]; !ok && c.Spec.Kind != rekey.KindManual {
				a.warnf("last rotation of %s unknown: counting from today (pass --rotated %s=YYYY-MM-DD)", c.Key, c.Key)
			}
		}
	}
	fmt.Fprintf(a.out(), "next: rekey status\n")
	return nil
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

// keyDir is where master key files go: $XDG_CONFIG_HOME/rekey/keys or ~/.config/rekey/keys.
func (a *app) keyDir() (string, error) {
	if x := a.getenv("XDG_CONFIG_HOME"); filepath.IsAbs(x) {
		return filepath.Join(x, "rekey", "keys"), nil
	}
	return seal.DefaultKeyDir()
}
