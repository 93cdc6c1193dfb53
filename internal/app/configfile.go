package app

import (
	"os"
	"path/filepath"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/dotenv"
	"github.com/rekeyhq/rekey/internal/approval"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/envfile"
)

// ApproveWritten approves the rekey.yaml rekey itself just wrote (init,
// master rotate, postgres add-role). A failure is a warning: the file is
// written, and `rekey config trust` approves it.
func (s *Session) ApproveWritten(cfgPath string, text []byte) {
	if err := approval.Write(s.Opts.StateDir, cfgPath, text); err != nil {
		s.warnf("could not record the approval of the %s rekey wrote (%v): review it and run `rekey config trust`", filepath.Base(cfgPath), err)
	}
}

// rewriteConfig writes cfg back to its rekey.yaml and approves it,
// refusing when that would lose anything config.Marshal does not write.
// The comment blocks at the end of a secret and of the file (init's
// stanzas) are kept; it warns when other comments are lost.
func (s *Session) rewriteConfig(cfg *config.Config) error {
	old, err := os.ReadFile(cfg.Path)
	if err != nil {
		return rekey.Wrap(rekey.CodeNotFound, err, "read %s", cfg.Path)
	}
	kept, lost := config.KeptComments(old)
	text, err := config.MarshalWith(cfg, kept)
	if err != nil {
		return err
	}
	back, err := config.Parse(cfg.Path, text)
	if err != nil {
		return ConfigErr(err)
	}
	if len(back.Secrets) != len(cfg.Secrets) || len(back.Environments) != len(cfg.Environments) || len(back.TLS) != len(cfg.TLS) ||
		len(back.Services) != len(cfg.Services) || len(back.Checks) != len(cfg.Checks) {
		return rekey.Errorf(rekey.CodeInternal, "cannot rewrite %s without losing some of it", envfile.RelTo(cfg.Dir, cfg.Path)).
			WithHint("edit it by hand: under the secret's postgres: strategy: alternating, roles: [FIRST, SECOND], grace: 1d; in the URL template write {{ NAME.role | urlquery }} as the user")
	}
	if lost > 0 {
		s.warnf("%s is rewritten without %d of its comment lines (rekey keeps those at the end of a secret and of the file)", envfile.RelTo(cfg.Dir, cfg.Path), lost)
	}
	if err := dotenv.WriteFileAtomic(cfg.Path, text, 0o644); err != nil {
		return rekey.Wrap(rekey.CodeInternal, err, "write %s", cfg.Path)
	}
	s.ApproveWritten(cfg.Path, text)
	return nil
}
