package doctor

import (
	"github.com/rekeyhq/rekey/internal/approval"
)

// checkConfigApproved: rekey.yaml is approved on this machine as it is
// (internal/approval); the commands that act on it refuse it otherwise.
func (d *run) checkConfigApproved() Check {
	const check = "config-approved"
	fix := "review it with `rekey config diff`, then run `rekey config trust`"
	ap, err := approval.Read(d.StateDir, d.cfg.Path)
	switch {
	case err != nil:
		return fail(check, err.Error(), fix)
	case ap == nil:
		return fail(check, "rekey.yaml is not approved on this machine: rotate, recover, verify, run and every command that acts on it refuse it", fix)
	case ap.Digest != d.cfg.Digest:
		return fail(check, "rekey.yaml changed since it was approved ("+approval.Compare(ap.Text, d.cfg.Raw).Summary()+"): the commands that act on it refuse it", fix)
	}
	return pass(check, "rekey.yaml is approved as it is (sha256 "+approval.ShortSum(d.cfg.Digest)+")")
}
