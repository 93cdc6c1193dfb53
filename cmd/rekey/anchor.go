package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/rekeyhq/rekey"
	"github.com/spf13/cobra"
)

// runAuditVerify checks everything the store can prove about itself: the
// hash chain, every row's authentication, the anchor outside the store, and
// that every version and rotation has its audit entry.
func (a *app) runAuditVerify(ctx context.Context) error {
	_, st, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	n, err := st.VerifyAudit(ctx)
	if err != nil {
		return err
	}
	if err := st.Authenticate(ctx, true); err != nil {
		return err
	}
	missing, err := st.Unaudited(ctx)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		for _, m := range missing {
			fmt.Fprintf(a.errw(), "rekey: %s\n", m)
		}
		return &rekey.Error{Code: rekey.CodeAuth, Msg: fmt.Sprintf("%d stored versions or rotations have no audit entry", len(missing)),
			Hint: "they were made outside rekey, or their entries were cut from the log: restore .rekey/rekey.db from a backup you trust", Err: rekey.ErrCorrupt}
	}
	fmt.Fprintf(a.out(), "audit chain ok: %d entries\n", n)
	fmt.Fprintf(a.out(), "store ok: every secret, version and rotation authenticated and audited\n")
	an := st.Anchor()
	switch {
	case an.Path == "":
		fmt.Fprintf(a.out(), "anchor: none kept (no HOME or XDG_STATE_HOME)\n")
	case an.Found:
		fmt.Fprintf(a.out(), "anchor ok: %s (entry %d; the store is at entry %d)\n", an.Path, an.Seq, an.StoreSeq)
	default:
		fmt.Fprintf(a.out(), "anchor: none yet on this machine; written now to %s\n", an.Path)
	}
	return nil
}

func (a *app) auditAnchorCommand() *cobra.Command {
	var reset bool
	var reason string
	c := &cobra.Command{
		Use:   "anchor [--reset --reason TEXT]",
		Short: "Show the audit anchor kept outside the store; --reset accepts a store restored from an older backup",
		Long: `The anchor is the audit log's head (entry number and hash) kept outside the
project, in $XDG_STATE_HOME/rekey/anchors (or ~/.local/state/rekey/anchors),
under a MAC only the master key can make. Every command compares the store
with it: a .rekey/rekey.db replaced by an older copy, or with its last audit
entries cut, is refused (exit 6).

After restoring an older backup on purpose, ` + "`rekey audit anchor --reset --reason TEXT`" + `
accepts the store as it is now; the reset and its reason are audited.`,
		Example: `  rekey audit anchor
  rekey audit anchor --reset --reason "restored the 2026-11-30 backup after a disk failure"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if reset && reason == "" {
				return rekey.Errorf(rekey.CodeInvalid, "--reset needs --reason").WithHint("say why the store went back, e.g. --reason \"restored last night's backup\"")
			}
			if !reset && reason != "" {
				return rekey.Errorf(rekey.CodeInvalid, "--reason goes with --reset")
			}
			a.s().AnchorReset = reset
			_, st, err := a.openStore(cmd.Context())
			if err != nil {
				return err
			}
			an := st.Anchor()
			if an.Path == "" {
				return errors.New("no anchor is kept: HOME and XDG_STATE_HOME are unset")
			}
			if !reset {
				state := "none yet on this machine (written when this command ends)"
				if an.Found {
					state = fmt.Sprintf("entry %d", an.Seq)
				}
				fmt.Fprintf(a.out(), "anchor: %s\nanchor records: %s\nstore is at: entry %d\n", an.Path, state, an.StoreSeq)
				return nil
			}
			if err := a.s().Audit(cmd.Context(), st, rekey.AuditEntry{Action: "anchor.reset", Outcome: "ok", Detail: reason}); err != nil {
				return err
			}
			fmt.Fprintf(a.out(), "anchor reset: the store is accepted at entry %d (%s)\n", st.Anchor().StoreSeq, an.Path)
			return nil
		},
	}
	c.Flags().BoolVar(&reset, "reset", false, "accept the store as it is now (after restoring an older backup on purpose)")
	c.Flags().StringVar(&reason, "reason", "", "why (recorded in the audit log)")
	return c
}
