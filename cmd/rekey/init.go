package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/rekeyhq/rekey"
	rkapp "github.com/rekeyhq/rekey/internal/app"
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
	detectColumns bool
}

func (a *app) initCommand() *cobra.Command {
	var o initOptions
	c := &cobra.Command{
		Use:   "init --env-file PATH [--environment NAME] [--rotated NAME=YYYY-MM-DD]... [--import-log FILE] [--detect-columns] [--force]",
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

rekey.yaml ends with commented, ready-to-uncomment stanzas: services: (a
systemd unit named after the project folder, in /etc/systemd/system or
~/.config/systemd/user, or the compose service of compose.yaml or
docker-compose.yml named after it or reading the .env), checks: (a postgres
check on DATABASE_URL, an http check on PORT), and under the secrets
sessions: (a signing secret) and reencrypt: (a data key). Remove the leading
"# " of a stanza's lines to use it ("##" lines are notes), then run
` + "`rekey config trust`" + `. --detect-columns fills reencrypt: with the columns
whose sampled values look like base64 (or bytea) AES-GCM ciphertexts: it reads
up to 5 rows of every text and bytea column of the user's tables through the
.env's PostgreSQL URL (DATABASE_URL, else an admin URL), and names the data
key of the .env that opens them.

Running init for a second environment adds it to the existing rekey.yaml.
For an environment rekey.yaml has already, init refuses and names what it
would replace; --force replaces that environment only (its targets, derived
values and current values; the old values stay in the history), never the
others. When it is the only environment, --force creates rekey.yaml and the
store anew. init never prompts unless --passphrase is given on a terminal.`,
		Args: cobra.NoArgs,
		Example: `  rekey init --env-file .env
  rekey init --env-file .env.staging --environment staging
  rekey init --env-file .env.staging --environment staging --force   # redo staging only
  rekey init --env-file .env --detect-columns
  rekey init --env-file .env --rotated JWT_SECRET=2026-09-01 --import-log docs/secret-rotation-log.md`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.envFile == "" {
				return &usageError{err: errors.New("init needs --env-file: the .env to inventory"), cmd: cmd.CommandPath()}
			}
			return a.runInit(cmd.Context(), o)
		},
	}
	c.Flags().StringVar(&o.envFile, "env-file", "", "the .env file to inventory (required)")
	c.Flags().StringArrayVar(&o.rotated, "rotated", nil, "NAME=YYYY-MM-DD: when NAME was last rotated (repeatable)")
	c.Flags().StringVar(&o.importLog, "import-log", "", "a rotation log in the runbook's Markdown format to read last-rotation dates from")
	c.Flags().BoolVar(&o.force, "force", false, "replace the environment if rekey.yaml has it (never another environment; the only one: rekey.yaml and the store anew)")
	c.Flags().BoolVar(&o.detectColumns, "detect-columns", false, "sample the database of the .env's PostgreSQL URL for AES-GCM encrypted columns (for the commented reencrypt: stanza)")
	c.Flags().BoolVar(&o.passphrase, "passphrase", false, "derive the master key from a passphrase (REKEY_PASSPHRASE or a prompt)")
	c.Flags().StringVar(&o.keyFile, "key-file", "", "where to create the master key file (default: ~/.config/rekey/keys/PROJECT-ID.key)")
	c.Flags().StringVar(&o.pgAlternating, "postgres-alternating", "", "set up the alternating strategy for the database password: create the second login role (ROLE, default derived from the URL's user: app_blue -> app_green) as a copy of the URL's role; on PostgreSQL 16 and later the .env needs an admin URL (a secret whose name contains ADMIN, e.g. PG_ADMIN_URL, holding a postgres:// URL of the same host and port; README \"PostgreSQL privileges per version\" says what its role needs); if init then fails, the role it created is dropped again")
	c.Flags().Lookup("postgres-alternating").NoOptDefVal = "auto"
	return c
}

func (a *app) runInit(ctx context.Context, o initOptions) error {
	inv, err := a.s().Init(ctx, rkapp.InitOptions{
		EnvFile: o.envFile, Rotated: o.rotated, ImportLog: o.importLog, Force: o.force, Passphrase: o.passphrase, KeyFile: o.keyFile,
		PostgresAlternating: o.pgAlternating, NewPassphrase: a.newPassphrase, OnPair: a.reportPair, DetectColumns: o.detectColumns,
	})
	if err != nil {
		return err
	}
	// Tell what was decided.
	w := tabwriter.NewWriter(a.out(), 2, 4, 2, ' ', 0)
	fmt.Fprintf(w, "KEY\tKIND\tEVERY\tLAST ROTATED\tWHY\n")
	for _, c := range inv.Classes {
		kind, every, last := "-", "-", "-"
		if c.Secret {
			kind = string(c.Spec.Kind)
			sp, _ := inv.Config.Secret(c.Key)
			if sp.Period > 0 {
				every = rekey.FormatDuration(sp.Period)
			}
			if d, ok := inv.Dates[c.Key]; ok {
				last = d.Format("2006-01-02")
			} else if inv.Imported[c.Key] {
				last = "unknown (today)"
			}
		} else if c.Derived != nil {
			kind = "derived"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", c.Key, kind, every, last, c.Reason)
	}
	w.Flush()
	a.infof("\n%s", initCounts(inv, o.envFile))
	if inv.Replaced != "" {
		fmt.Fprintf(a.out(), "replaced %s\n", inv.Replaced)
	}
	secrets := inv.Counts.Generated + inv.Counts.UserManaged + inv.Counts.Empty
	added := ""
	if len(inv.Added) != secrets {
		added = fmt.Sprintf(", %d new to it", len(inv.Added))
	}
	fmt.Fprintf(a.out(), "wrote %s (environment %s, %d secrets%s) and the sealed store %s\n", inv.ConfigRel, inv.Env, secrets, added, inv.StoreRel)
	if len(inv.Stanzas) > 0 {
		a.infof("%s ends with commented stanzas to uncomment: %s", inv.ConfigRel, strings.Join(inv.Stanzas, ", "))
		for _, f := range inv.Found {
			a.infof("  found: %s", f)
		}
	}
	if inv.KeyFile != "" {
		fmt.Fprintf(a.out(), "master key: %s\n", inv.KeyFile)
		a.warnf("back up the master key file %s now: without it the store cannot be opened", inv.KeyFile)
	}
	for _, m := range inv.Warnings {
		a.warnf("%s", m)
	}
	a.infof("next: rekey status")
	return nil
}

// initCounts is init's summary line: "imported 4 secrets from .env: 3
// generated-kind, 1 user-managed; 1 derived value; 2 other variables left
// alone".
func initCounts(inv *rkapp.Inventory, envFile string) string {
	n := inv.Counts
	plural := func(k int, one, many string) string {
		if k == 1 {
			return "1 " + one
		}
		return fmt.Sprintf("%d %s", k, many)
	}
	s := fmt.Sprintf("imported %s from %s: %d generated-kind, %d user-managed", plural(n.Generated+n.UserManaged, "secret", "secrets"), envFile, n.Generated, n.UserManaged)
	if n.Empty > 0 {
		s += "; " + plural(n.Empty, "secret without a value (not imported)", "secrets without a value (not imported)")
	}
	if n.Derived > 0 {
		s += "; " + plural(n.Derived, "derived value", "derived values") + " (computed from them)"
	}
	return s + "; " + plural(n.Other, "other variable", "other variables") + " left alone"
}
