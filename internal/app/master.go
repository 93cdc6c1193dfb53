package app

import (
	"context"
	"path/filepath"
	"strings"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/dotenv"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/seal"
)

// MasterRotated is what `rekey master rotate` did.
type MasterRotated struct {
	OldID, NewID string
	// MasterKey is rekey.yaml's store.master_key now: "env", "passphrase"
	// or "file:PATH".
	MasterKey string
	// KeyFile is the new key file written, or "".
	KeyFile string
	// OldKeyFile is the key file that no longer opens the store (when
	// rekey.yaml was rewritten to name another key), or "".
	OldKeyFile string
}

// RotateMasterKey re-seals the whole store under a new master key, holding
// the lock of every environment, audited before and after. The new key is
// REKEY_NEW_MASTER_KEY, else derived from the passphrase newPassphrase
// reads when it is not nil (--passphrase), else generated into a new key
// file, written before the store changes. rekey.yaml is rewritten (and
// approved) last when it must name another key.
func (s *Session) RotateMasterKey(ctx context.Context, newPassphrase func() ([]byte, error)) (*MasterRotated, error) {
	cfg, st, err := s.OpenStore(ctx)
	if err != nil {
		return nil, err
	}
	for _, env := range cfg.Environments {
		if err := s.LockName(cfg, env.Name); err != nil {
			return nil, err
		}
	}
	out := &MasterRotated{OldID: st.KeyID()}
	nk, kdf, err := s.newMasterKey(cfg, newPassphrase, out)
	if err != nil {
		return nil, err
	}
	out.NewID = nk.ID()
	detail := out.OldID + " -> " + out.NewID
	if err := s.Audit(ctx, st, rekey.AuditEntry{Action: "master.rotate", Outcome: "started", Detail: detail}); err != nil {
		return nil, err
	}
	if err := st.RotateMasterKeyKDF(ctx, nk, kdf); err != nil {
		return nil, err
	}
	if err := s.Audit(ctx, st, rekey.AuditEntry{Action: "master.rotate", Outcome: "ok", Detail: detail}); err != nil {
		return nil, err
	}
	if out.MasterKey == cfg.Store.MasterKey {
		return out, nil
	}
	old := cfg.Store.MasterKey
	cfg.Store.MasterKey = out.MasterKey
	kept, lost := config.KeptComments(cfg.Raw) // init's stanzas stay
	text, err := config.MarshalWith(cfg, kept)
	if err != nil {
		return nil, err
	}
	if lost > 0 {
		s.warnf("rekey.yaml is rewritten without %d of its comment lines (rekey keeps those at the end of a secret and of the file)", lost)
	}
	if err := dotenv.WriteFileAtomic(cfg.Path, text, 0o644); err != nil {
		return nil, rekey.Wrap(rekey.CodeInternal, err, "update rekey.yaml").WithHint("set store.master_key to %s by hand", out.MasterKey)
	}
	s.ApproveWritten(cfg.Path, text)
	if p, ok := strings.CutPrefix(old, "file:"); ok {
		out.OldKeyFile = p
	}
	return out, nil
}

// newMasterKey is the new master key (and its KDF parameters, for a
// passphrase), recording in out where it comes from.
func (s *Session) newMasterKey(cfg *config.Config, newPassphrase func() ([]byte, error), out *MasterRotated) (seal.Key, string, error) {
	switch {
	case s.Getenv("REKEY_NEW_MASTER_KEY") != "":
		nk, err := seal.ParseKey(s.Getenv("REKEY_NEW_MASTER_KEY"))
		if err != nil {
			return seal.Key{}, "", rekey.Wrap(rekey.CodeInvalid, err, "REKEY_NEW_MASTER_KEY")
		}
		out.MasterKey = "env"
		return nk, "", nil
	case newPassphrase != nil:
		p, err := seal.NewKDFParams()
		if err != nil {
			return seal.Key{}, "", err
		}
		pass, err := newPassphrase()
		if err != nil {
			return seal.Key{}, "", err
		}
		nk := seal.KeyFromPassphrase(pass, p)
		seal.Wipe(pass)
		out.MasterKey = "passphrase"
		return nk, p.String(), nil
	}
	nk, err := seal.GenerateKey()
	if err != nil {
		return seal.Key{}, "", err
	}
	dir, err := s.KeyDir()
	if err != nil {
		return seal.Key{}, "", err
	}
	if old, ok := strings.CutPrefix(cfg.Store.MasterKey, "file:"); ok {
		dir = filepath.Dir(old)
	}
	out.KeyFile = filepath.Join(dir, filepath.Base(cfg.Dir)+"-"+nk.ID()+".key")
	if err := seal.WriteKeyFile(out.KeyFile, nk); err != nil {
		return seal.Key{}, "", err
	}
	out.MasterKey = "file:" + out.KeyFile
	return nk, "", nil
}
