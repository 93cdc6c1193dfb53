package doctor

import (
	"context"
	"fmt"
)

// checkAuditChain: the audit log's hash chain is intact, every row is
// authenticated, and every version and rotation has its audit entry.
func (d *run) checkAuditChain() Check {
	const name = "audit-chain"
	n, err := d.st.VerifyAudit(d.ctx)
	var missing []string
	if au, ok := d.st.(interface {
		Authenticate(context.Context, bool) error
		Unaudited(context.Context) ([]string, error)
	}); ok && err == nil {
		if err = au.Authenticate(d.ctx, true); err == nil {
			missing, err = au.Unaudited(d.ctx)
		}
	}
	if err != nil {
		return fail(name, err.Error(), "the store was edited outside rekey: restore it from a backup and find out who had write access to "+d.rel(d.cfg.Store.Path))
	}
	if len(missing) > 0 {
		return fail(name, fmt.Sprintf("%d versions or rotations have no audit entry (first: %s)", len(missing), missing[0]), "they were made outside rekey or their entries were cut: restore the store from a backup; `rekey audit verify` lists them")
	}
	return pass(name, fmt.Sprintf("audit chain ok: %d entries; every row authenticated and audited", n))
}
