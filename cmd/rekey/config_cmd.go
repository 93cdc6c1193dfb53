package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/rekeyhq/rekey"
	rkapp "github.com/rekeyhq/rekey/internal/app"
	"github.com/rekeyhq/rekey/internal/approval"
	"github.com/rekeyhq/rekey/internal/textsafe"
	"github.com/spf13/cobra"
)

func (a *app) configCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "config",
		Short: "Approve rekey.yaml on this machine (trust); show what changed since (diff)",
		Long: `rekey acts only on a rekey.yaml approved on this machine, as direnv loads
only an .envrc you allowed. rekey.yaml says which commands rekey runs as you
(service restarts, command checks, hooks, codecs) and where values go (http
checks, derived URLs, database hosts and roles, .env targets, the master key
file); whoever can write the project folder can edit it. So rotate, recover,
rollback, set, publish, run, verify, services, reencrypt, postgres add-role
and master rotate refuse (exit 5) a rekey.yaml that changed since you
approved it, or that was never approved here, before they read a key or
touch the store. status, history, get, audit, report, doctor, scan and
example keep working; doctor FAILs config-approved.

The approval is kept outside the project, in $XDG_STATE_HOME/rekey/trusted
(else ~/.local/state/rekey/trusted): the SHA-256 of the approved text and a
copy of it, for ` + "`rekey config diff`" + `. rekey init, postgres add-role and
master rotate approve the rekey.yaml they write; init refuses to add an
environment to a rekey.yaml that is not approved as it is.`,
		Example: `  rekey config diff       # what changed since the last approval (exit 1 if anything)
  rekey config trust      # approve rekey.yaml as it is now (audited)`,
		Args: cobra.NoArgs,
	}
	c.AddCommand(a.configTrustCommand(), a.configDiffCommand())
	return c
}

func (a *app) configTrustCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "trust",
		Short: "Approve rekey.yaml as it is now, on this machine (audited)",
		Long: `trust approves the current text of rekey.yaml: the commands that act on it
run again. It prints what changed since the last approval (or "first
approval"), opens the store (so only someone holding the master key can
approve), records config.trust in the audit log (the short SHA-256 and the
number of changed lines; never the file's text) and writes the approval to
$XDG_STATE_HOME/rekey/trusted (else ~/.local/state/rekey/trusted).

Review the change first (` + "`rekey config diff`" + `): every command, URL, host, role
and path in rekey.yaml is acted on as you.`,
		Example: `  rekey config diff && echo "nothing changed"
  rekey config trust`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runConfigTrust(cmd.Context()) },
	}
}

func (a *app) configDiffCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "diff",
		Short: "Show what changed in rekey.yaml since it was approved (exit 1 when anything did)",
		Long: `diff prints the changes of rekey.yaml since it was last approved on this
machine, as ` + "`diff -u`" + ` does (lines holding control characters are quoted).
It exits 0 when rekey.yaml is approved as it is and 1 when it differs or
was never approved (then all of it is shown as added). It needs no master
key.`,
		Example: `  rekey config diff
  rekey config diff --config deploy/rekey.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runConfigDiff() },
	}
}

func (a *app) runConfigTrust(ctx context.Context) error {
	cfg, err := a.loadConfig() // a read-only load: approval is what this command gives
	if err != nil {
		return err
	}
	name := textsafe.Quote(filepath.Base(cfg.Path))
	prev, err := approval.Read(a.stateDir(), cfg.Path)
	if err != nil {
		if errors.Is(err, approval.ErrNoStateDir) {
			return err
		}
		a.warnf("%v: approving anew", err)
		prev = nil
	}
	sum := approval.ShortSum(cfg.Digest)
	if prev != nil && prev.Digest == cfg.Digest {
		fmt.Fprintf(a.out(), "%s is approved already, as it is (sha256 %s)\n", name, sum)
		return nil
	}
	// Only someone who can open the store approves.
	_, st, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	var detail string
	if prev == nil {
		n := approval.CountLines(cfg.Raw)
		fmt.Fprintf(a.out(), "first approval of %s on this machine (%d lines)\n", name, n)
		detail = fmt.Sprintf("sha256 %s; first approval, %d lines", sum, n)
	} else {
		ch := approval.Compare(prev.Text, cfg.Raw)
		fmt.Fprintf(a.out(), "%s changed since it was approved (%s)%s\n", name, ch.Summary(), ch.Excerpt(12))
		detail = fmt.Sprintf("sha256 %s; %d lines added, %d removed", sum, ch.Added, ch.Removed)
	}
	if err := a.s().Audit(ctx, st, rekey.AuditEntry{Action: "config.trust", Outcome: "ok", Detail: detail}); err != nil {
		return err
	}
	if err := approval.Write(a.stateDir(), cfg.Path, cfg.Raw); err != nil {
		return rekey.Wrap(rekey.CodeInternal, err, "record the approval of %s", name)
	}
	fmt.Fprintf(a.out(), "approved %s (sha256 %s): rekey now runs the commands and sends values where it says\n", name, sum)
	return nil
}

func (a *app) runConfigDiff() error {
	path, err := a.s().ConfigPath()
	if err != nil {
		return err
	}
	if path, err = filepath.Abs(path); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return rkapp.ConfigErr(err)
	}
	text, err := io.ReadAll(io.LimitReader(f, approval.MaxSize))
	f.Close()
	if err != nil {
		return err
	}
	prev, err := approval.Read(a.stateDir(), path)
	if err != nil {
		return err
	}
	name := textsafe.Quote(filepath.Base(path))
	var old []byte
	oldName := name + " (approved)"
	if prev == nil {
		fmt.Fprintf(a.out(), "%s is not approved on this machine yet: all of it is new\n", name)
		oldName = "/dev/null (never approved)"
	} else {
		if prev.Digest == sha256.Sum256(text) {
			fmt.Fprintf(a.out(), "%s is approved as it is (sha256 %s)\n", name, approval.ShortSum(prev.Digest))
			return nil
		}
		old = prev.Text
	}
	ch := approval.Compare(old, text)
	var b bytes.Buffer
	ch.Unified(&b, oldName, name+" (now)", 3)
	if _, err := a.out().Write(b.Bytes()); err != nil {
		return err
	}
	a.exit = 1
	return nil
}
