package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) masterCommand() *cobra.Command {
	c := &cobra.Command{Use: "master", Short: "Manage the master key (rotate)"}
	var passphrase bool
	rot := &cobra.Command{
		Use: "rotate [--passphrase]",
		Example: `  rekey master rotate
  rekey master rotate --passphrase`,
		Short: "Re-seal every value under a new master key; no secret changes",
		Long: `master rotate re-seals every version and the store's internal keys under a
new master key, in one transaction: either all of it is under the new key or
none. Secrets, fingerprints and the audit chain are unchanged.

The new key comes from REKEY_NEW_MASTER_KEY (then set REKEY_MASTER_KEY to it),
from a new passphrase (--passphrase: REKEY_NEW_PASSPHRASE or a prompt, never
REKEY_PASSPHRASE; at least 12 characters, not a repetition), or is
generated into a new key file beside the old one (rekey.yaml is updated to
point at it; the old file is kept for you to delete once the new one is
backed up). The new key file is written before the store changes, so an
interruption never leaves a store whose key is nowhere.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return a.runMasterRotate(cmd.Context(), passphrase) },
	}
	rot.Flags().BoolVar(&passphrase, "passphrase", false, "derive the new key from a new passphrase")
	c.AddCommand(rot)
	return c
}

func (a *app) runMasterRotate(ctx context.Context, passphrase bool) error {
	var newPassphrase func() ([]byte, error)
	if passphrase {
		// Never REKEY_PASSPHRASE: that one opens the store as it is.
		newPassphrase = func() ([]byte, error) { return a.newPassphrase("REKEY_NEW_PASSPHRASE", "New passphrase: ") }
	}
	r, err := a.s().RotateMasterKey(ctx, newPassphrase)
	if err != nil {
		return err
	}
	if r.OldKeyFile != "" {
		fmt.Fprintf(a.out(), "the old key file %s no longer opens the store: delete it once the new one is backed up\n", r.OldKeyFile)
	}
	fmt.Fprintf(a.out(), "store re-sealed under master key %s (was %s)\n", r.NewID, r.OldID)
	if r.KeyFile != "" {
		fmt.Fprintf(a.out(), "new master key file: %s\n", r.KeyFile)
		a.warnf("back up %s now: without it the store cannot be opened", r.KeyFile)
	}
	if r.MasterKey == "env" {
		a.warnf("set REKEY_MASTER_KEY to the new key everywhere rekey runs")
	}
	return nil
}
