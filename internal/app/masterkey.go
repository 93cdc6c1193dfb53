package app

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/sqlite"
	"github.com/rekeyhq/rekey/seal"
)

// MasterKey finds the master key: REKEY_MASTER_KEY, else what rekey.yaml names.
func (s *Session) MasterKey(cfg *config.Config) (seal.Key, error) {
	if v := s.Getenv("REKEY_MASTER_KEY"); v != "" {
		k, err := seal.ParseKey(v)
		if err != nil {
			return seal.Key{}, rekey.Wrap(rekey.CodeInvalid, err, "REKEY_MASTER_KEY").WithHint("it must be base64 of 32 bytes, as `openssl rand -base64 32` prints")
		}
		return k, nil
	}
	mk := cfg.Store.MasterKey
	switch {
	case strings.HasPrefix(mk, "file:"):
		path := strings.TrimPrefix(mk, "file:")
		k, err := seal.ReadKeyFile(path)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				// After an interrupted `rekey master rotate`, the new key file sits beside the old one.
				if k2, ok := s.findKeyByID(cfg, path); ok {
					return k2, nil
				}
				return seal.Key{}, rekey.Errorf(rekey.CodeAuth, "master key file %s does not exist", path).WithHint("restore it from your backup, or set REKEY_MASTER_KEY")
			}
			return seal.Key{}, rekey.Wrap(rekey.CodeAuth, err, "read master key")
		}
		if _, id, err := sqlite.KDF(cfg.Store.Path); err == nil && id != k.ID() {
			if k2, ok := s.findKeyByID(cfg, path); ok {
				return k2, nil
			}
		}
		return k, nil
	case mk == "passphrase":
		kdf, _, err := sqlite.KDF(cfg.Store.Path)
		if err != nil {
			return seal.Key{}, err
		}
		p, err := seal.ParseKDFParams(kdf)
		if err != nil {
			return seal.Key{}, rekey.Wrap(rekey.CodeAuth, err, "store passphrase parameters")
		}
		if s.Opts.Passphrase == nil {
			return seal.Key{}, rekey.Errorf(rekey.CodeAuth, "the store is sealed under a passphrase and none can be read").WithHint("set REKEY_PASSPHRASE")
		}
		pass, err := s.Opts.Passphrase("Passphrase for the rekey store: ", false)
		if err != nil {
			return seal.Key{}, err
		}
		k := seal.KeyFromPassphrase(pass, p)
		seal.Wipe(pass)
		return k, nil
	default:
		return seal.Key{}, rekey.Errorf(rekey.CodeAuth, "no master key: REKEY_MASTER_KEY is not set").WithHint("export REKEY_MASTER_KEY (base64 of 32 bytes), or set store.master_key in rekey.yaml to file:PATH")
	}
}

// findKeyByID looks beside path for the key file whose ID the store expects.
func (s *Session) findKeyByID(cfg *config.Config, path string) (seal.Key, bool) {
	_, id, err := sqlite.KDF(cfg.Store.Path)
	if err != nil || id == "" {
		return seal.Key{}, false
	}
	matches, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "*"+id+".key"))
	for _, m := range matches {
		if k, err := seal.ReadKeyFile(m); err == nil && k.ID() == id {
			return k, true
		}
	}
	return seal.Key{}, false
}
