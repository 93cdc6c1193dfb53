package doctor

import (
	"fmt"
	"strings"

	"github.com/rekeyhq/rekey"
)

// checkStatus is two checks from the status rows of every environment:
// strength (no secret is weak) and schedule (nothing overdue; due soon is a
// WARN). An error is the store's, and stops doctor.
func (d *run) checkStatus() (strength, schedule Check, err error) {
	var weak, overdue, soon []string
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
			case rekey.StateOverdue:
				overdue = append(overdue, id+" due "+r.NextDue.UTC().Format("2006-01-02"))
			case rekey.StateDueSoon:
				soon = append(soon, id+" due "+r.NextDue.UTC().Format("2006-01-02"))
			}
		}
	}
	if len(weak) > 0 {
		strength = fail("strength", "weak: "+strings.Join(weak, ", "), "rotate them to generated values: `rekey rotate NAME` (user-managed keys: get a longer one, `rekey set NAME`)")
	} else {
		strength = pass("strength", "no weak secret")
	}
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
