package doctor

import (
	"fmt"
	"strings"

	"github.com/rekeyhq/rekey"
)

// checkStatus is two checks from the status rows of every environment:
// strength (no secret is weak, in the store or a .env: strength.go) and schedule (nothing overdue; due soon is a
// WARN). An error is the store's, and stops doctor.
func (d *run) checkStatus() (strength, schedule Check, err error) {
	var weak, overdue, soon []string
	reported := map[[2]string]string{} // environment, name → fingerprint of a weak current value
	for _, e := range d.cfg.Environments {
		rows, err := d.Status(d.ctx, e.Name)
		if err != nil {
			return Check{}, Check{}, err
		}
		for _, r := range rows {
			id := r.Name + " (" + e.Name + ")"
			switch r.State {
			case rekey.StateWeak:
				weak = append(weak, fmt.Sprintf("%s: %d bits", id, r.Bits))
				reported[[2]string{e.Name, r.Name}] = r.Fingerprint
			case rekey.StateOverdue:
				overdue = append(overdue, id+" due "+r.NextDue.UTC().Format("2006-01-02"))
			case rekey.StateDueSoon:
				soon = append(soon, id+" due "+r.NextDue.UTC().Format("2006-01-02"))
			}
		}
	}
	strength = d.checkStrength(weak, reported)
	switch {
	case len(overdue) > 0:
		schedule = fail("schedule", "overdue: "+strings.Join(overdue, ", "), "`rekey rotate --due`, and rotate user-managed keys at their providers (`rekey set NAME`)")
	case len(soon) > 0:
		schedule = warn("schedule", "due soon: "+strings.Join(soon, ", "), "`rekey rotate --due` when they fall due, or now")
	default:
		schedule = pass("schedule", "nothing overdue or due soon")
	}
	return strength, schedule, nil
}
