package main

// rekey acts only on a rekey.yaml approved on this machine (internal/approval
// keeps the approvals, outside the project); this file says which commands
// may run on one that is not, and approves what rekey itself writes.

import (
	"github.com/rekeyhq/rekey/internal/approval"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/spf13/cobra"
)

// readOnlyCommands may run on a rekey.yaml that is not approved: they only
// report (or, for init and config, check approval themselves). Every other
// command that loads rekey.yaml refuses it unless it is approved as it is.
// `rotate NAME --dry-run` is allowed too (see app.Session.PlanRotation).
var readOnlyCommands = map[string]bool{
	"rekey status": true, "rekey history": true, "rekey get": true, "rekey report": true,
	"rekey audit": true, "rekey audit verify": true, "rekey audit anchor": true,
	"rekey doctor": true, "rekey scan": true, "rekey example": true, "rekey demo": true,
	"rekey init": true, "rekey config trust": true, "rekey config diff": true,
	"rekey incident status": true, "rekey notify status": true,
}

func readOnlyCommand(c *cobra.Command) bool { return readOnlyCommands[c.CommandPath()] }

// stateDir is rekey's folder of per-user state outside any project
// (approvals, anchors): $XDG_STATE_HOME/rekey, else ~/.local/state/rekey.
func (a *app) stateDir() string { return approval.StateDir(a.getenv) }

// requireApproval refuses (exit 5) a rekey.yaml that is not approved on
// this machine exactly as it was parsed.
func (a *app) requireApproval(cfg *config.Config) error {
	return approval.Require(a.stateDir(), cfg.Path, cfg.Raw)
}

// approveWritten approves the rekey.yaml rekey itself just wrote
// (Session.ApproveWritten).
func (a *app) approveWritten(cfgPath string, text []byte) { a.s().ApproveWritten(cfgPath, text) }
