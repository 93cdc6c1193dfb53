package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/dotenv"
	"github.com/rekeyhq/rekey/seal"
	"github.com/spf13/cobra"
)

func (a *app) masterCommand() *cobra.Command {
	c := &cobra.Command{Use: "master", Short: "Manage the master key (rotate)"}
	var passphrase bool
	rot := &cobra.Command{
		Use:   "rotate [--passphrase]",
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
	cfg, st, err := a.openStore(ctx)
	if err != nil {
		return err
	}
	for _, env := range cfg.Environments {
		if err := a.lockEnvName(cfg, env.Name); err != nil {
			return err
		}
	}
	oldID := st.KeyID()
	var nk seal.Key
	var kdf, newMK, keyPath string
	switch {
	case a.getenv("REKEY_NEW_MASTER_KEY") != "":
		nk, err = seal.ParseKey(a.getenv("REKEY_NEW_MASTER_KEY"))
		if err != nil {
			return rekey.Wrap(rekey.CodeInvalid, err, "REKEY_NEW_MASTER_KEY")
		}
		newMK = "env"
	case passphrase:
		p, err := seal.NewKDFParams()
		if err != nil {
			return err
		}
		// Never REKEY_PASSPHRASE: that one opens the store as it is.
		pass, err := a.newPassphrase("REKEY_NEW_PASSPHRASE", "New passphrase: ")
		if err != nil {
			return err
		}
		nk, kdf, newMK = seal.KeyFromPassphrase(pass, p), p.String(), "passphrase"
		seal.Wipe(pass)
	default:
		nk, err = seal.GenerateKey()
		if err != nil {
			return err
		}
		dir, err := a.keyDir()
		if err != nil {
			return err
		}
		if old, ok := strings.CutPrefix(cfg.Store.MasterKey, "file:"); ok {
			dir = filepath.Dir(old)
		}
		keyPath = filepath.Join(dir, filepath.Base(cfg.Dir)+"-"+nk.ID()+".key")
		if err := seal.WriteKeyFile(keyPath, nk); err != nil {
			return err
		}
		newMK = "file:" + keyPath
	}
	if err := a.audit(ctx, st, rekey.AuditEntry{Action: "master.rotate", Outcome: "started", Detail: oldID + " -> " + nk.ID()}); err != nil {
		return err
	}
	if err := st.RotateMasterKeyKDF(ctx, nk, kdf); err != nil {
		return err
	}
	if err := a.audit(ctx, st, rekey.AuditEntry{Action: "master.rotate", Outcome: "ok", Detail: oldID + " -> " + nk.ID()}); err != nil {
		return err
	}
	if newMK != cfg.Store.MasterKey {
		old := cfg.Store.MasterKey
		cfg.Store.MasterKey = newMK
		text, err := config.Marshal(cfg)
		if err != nil {
			return err
		}
		if err := dotenv.WriteFileAtomic(cfg.Path, text, 0o644); err != nil {
			return rekey.Wrap(rekey.CodeInternal, err, "update rekey.yaml").WithHint("set store.master_key to %s by hand", newMK)
		}
		a.approveWritten(cfg.Path, text)
		if p, ok := strings.CutPrefix(old, "file:"); ok {
			fmt.Fprintf(a.out(), "the old key file %s no longer opens the store: delete it once the new one is backed up\n", p)
		}
	}
	fmt.Fprintf(a.out(), "store re-sealed under master key %s (was %s)\n", nk.ID(), oldID)
	if keyPath != "" {
		fmt.Fprintf(a.out(), "new master key file: %s\n", keyPath)
		a.warnf("back up %s now: without it the store cannot be opened", keyPath)
	}
	if newMK == "env" {
		a.warnf("set REKEY_MASTER_KEY to the new key everywhere rekey runs")
	}
	return nil
}
