package main

import (
	"context"

	"github.com/rekeyhq/rekey"
	rkapp "github.com/rekeyhq/rekey/internal/app"
	"github.com/rekeyhq/rekey/internal/envfile"
	"github.com/rekeyhq/rekey/internal/fileperm"
)

// Temporary, until doctor, approval and demo move out of package main
// (issue 11): the session's methods under their old names.
var (
	fileAccess  = fileperm.Access
	secretMode  = fileperm.SecretMode
	fileIDs     = fileperm.IDs
	groupName   = fileperm.GroupName
	eachVersion = rkapp.EachVersion
	relTo       = envfile.RelTo
	configErr   = rkapp.ConfigErr
)

func (a *app) abs(p string) (string, error) { return a.s().Abs(p) }
func (a *app) configPath() (string, error)  { return a.s().ConfigPath() }
func (a *app) audit(ctx context.Context, st rekey.Store, e rekey.AuditEntry) error {
	return a.s().Audit(ctx, st, e)
}
