// Package report regenerates the team's rotation log, in the structure of
// the runbook it replaces, from the store's truth. It never contains a value:
// only names, dates, strengths and fingerprints.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/textsafe"
)

// Report is the data behind the rotation log.
type Report struct {
	Title          string               `json:"title"`
	Environment    string               `json:"environment"`
	Generated      time.Time            `json:"generated"`
	LatestRotation time.Time            `json:"latest_rotation,omitzero"`
	Rotated        []RotatedSecret      `json:"rotated"`
	RolledBack     []RolledBackSecret   `json:"rolled_back,omitempty"`
	NotRotated     []NotRotated         `json:"not_rotated"`
	Schedule       []ScheduleRow        `json:"schedule"`
	Inventory      []InventoryRow       `json:"inventory"`
	Secrets        []rekey.SecretStatus `json:"status"`
}

// RotatedSecret is one line of "Rotated Secrets".
type RotatedSecret struct {
	Name        string `json:"name"`
	Bits        int    `json:"bits"`
	Version     int    `json:"version"`
	Fingerprint string `json:"fingerprint"`
	Encoding    string `json:"encoding,omitempty"`
	State       string `json:"state,omitempty"`
}

// RolledBackSecret is one line of "Rolled Back": a secret whose current
// value an earlier version held, restored by `rekey rollback`. It is not a
// rotation: the value is as old as ValueSince.
type RolledBackSecret struct {
	Name         string    `json:"name"`
	Version      int       `json:"version"`
	ValueOf      int       `json:"value_of"`
	ValueSince   time.Time `json:"value_since"`
	RolledBackAt time.Time `json:"rolled_back_at"`
	NextDue      time.Time `json:"next_due,omitzero"`
	Fingerprint  string    `json:"fingerprint"`
	State        string    `json:"state"`
}

// NotRotated is one line of "NOT Rotated (Requires User Action)".
type NotRotated struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// ScheduleRow is one row of the rotation schedule table.
type ScheduleRow struct {
	Name        string    `json:"name"`
	LastRotated time.Time `json:"last_rotated,omitzero"`
	NextDue     time.Time `json:"next_due,omitzero"`
	Frequency   string    `json:"frequency"`
	State       string    `json:"state"`
}

// InventoryRow is one row of the secret inventory table.
type InventoryRow struct {
	Name       string `json:"name"`
	Purpose    string `json:"purpose"`
	Storage    string `json:"storage"`
	Encryption string `json:"encryption"`
	Access     string `json:"access"`
}

// Build assembles a report from specs and their status rows.
func Build(title, env string, specs []rekey.Spec, status []rekey.SecretStatus, now time.Time) *Report {
	r := &Report{Title: title, Environment: env, Generated: now.UTC(), Secrets: status}
	byName := map[string]rekey.SecretStatus{}
	for _, s := range status {
		byName[s.Name] = s
		if s.Kind != rekey.KindManual && s.ValueOf == 0 && s.LastRotated.After(r.LatestRotation) {
			r.LatestRotation = s.LastRotated
		}
	}
	latestDay := r.LatestRotation.UTC().Format("2006-01-02")
	for _, sp := range specs {
		st := byName[sp.Name]
		switch {
		case sp.Kind == rekey.KindManual:
			r.NotRotated = append(r.NotRotated, NotRotated{Name: sp.Name, Reason: "user-managed: rotate at the provider, then `rekey set " + sp.Name + "`"})
		case st.State == rekey.StateMissing:
			r.NotRotated = append(r.NotRotated, NotRotated{Name: sp.Name, Reason: "no value in the store"})
		case st.ValueOf != 0: // a rollback restored an earlier value: not a rotation
			r.RolledBack = append(r.RolledBack, RolledBackSecret{Name: sp.Name, Version: st.Version, ValueOf: st.ValueOf, ValueSince: st.LastRotated, RolledBackAt: st.RolledBackAt, NextDue: st.NextDue, Fingerprint: st.Fingerprint, State: st.State})
		case !r.LatestRotation.IsZero() && st.LastRotated.UTC().Format("2006-01-02") == latestDay:
			r.Rotated = append(r.Rotated, RotatedSecret{Name: sp.Name, Bits: st.Bits, Version: st.Version, Fingerprint: st.Fingerprint, Encoding: string(sp.Generator.Encoding), State: st.State})
		default:
			reason := "last rotated " + day(st.LastRotated)
			if st.State == rekey.StateOverdue {
				reason += ", overdue since " + day(st.NextDue) + ": run `rekey rotate " + sp.Name + "`"
			}
			r.NotRotated = append(r.NotRotated, NotRotated{Name: sp.Name, Reason: reason})
		}
		freq := "As needed"
		if sp.Period > 0 {
			freq = rekey.FormatDays(sp.Period)
		}
		r.Schedule = append(r.Schedule, ScheduleRow{Name: sp.Name, LastRotated: st.LastRotated, NextDue: st.NextDue, Frequency: freq, State: st.State})
		r.Inventory = append(r.Inventory, InventoryRow{Name: sp.Name, Purpose: sp.Purpose, Storage: sp.Storage, Encryption: sp.Encryption, Access: sp.Access})
	}
	return r
}

func day(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return t.UTC().Format("2006-01-02")
}

func cell(s string) string {
	if s == "" {
		return "-"
	}
	// rekey.yaml's text: a control character (a newline would end the
	// table row) is escaped, quoted (textsafe).
	return strings.ReplaceAll(textsafe.Quote(s), "|", `\|`)
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteMarkdown writes the rotation log in the runbook's structure.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "# Secret Rotation Log - %s\n\n", textsafe.Quote(r.Title))
	fmt.Fprintf(&b, "Environment: %s. Generated by rekey from its store on %s; no value appears in this file.\n\n", r.Environment, r.Generated.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "## 🔐 Latest Rotation: %s\n\n", day(r.LatestRotation))
	b.WriteString("### Rotated Secrets:\n")
	if len(r.Rotated) == 0 {
		b.WriteString("- (none)\n")
	}
	for _, s := range r.Rotated {
		if s.State == rekey.StateIncomplete {
			fmt.Fprintf(&b, "- ⚠️ %s (%d-bit cryptographically random, v%d, %s; re-encryption incomplete: some rows still need the previous key, run `rekey reencrypt`)\n", s.Name, s.Bits, s.Version, s.Fingerprint)
			continue
		}
		fmt.Fprintf(&b, "- ✅ %s (%d-bit cryptographically random, v%d, %s)\n", s.Name, s.Bits, s.Version, s.Fingerprint)
	}
	if len(r.RolledBack) > 0 {
		b.WriteString("\n### Rolled Back (an earlier value restored, not a rotation):\n")
	}
	for _, s := range r.RolledBack {
		fmt.Fprintf(&b, "- ↩️ %s (v%d restores v%d's value, created %s; rolled back %s, %s", s.Name, s.Version, s.ValueOf, day(s.ValueSince), day(s.RolledBackAt), s.Fingerprint)
		switch {
		case s.State == rekey.StateOverdue:
			fmt.Fprintf(&b, "; overdue since %s: run `rekey rotate %s`", day(s.NextDue), s.Name)
		case !s.NextDue.IsZero():
			fmt.Fprintf(&b, "; due %s", day(s.NextDue))
		}
		b.WriteString(")\n")
	}
	b.WriteString("\n### NOT Rotated (Requires User Action):\n")
	if len(r.NotRotated) == 0 {
		b.WriteString("- (none)\n")
	}
	for _, s := range r.NotRotated {
		fmt.Fprintf(&b, "- ⚠️ %s (%s)\n", s.Name, s.Reason)
	}
	b.WriteString("\n---\n\n## 📅 Rotation Schedule\n\n")
	b.WriteString("| Secret | Last Rotated | Next Due | Frequency | State |\n|--------|--------------|----------|-----------|-------|\n")
	for _, s := range r.Schedule {
		next := day(s.NextDue)
		if s.NextDue.IsZero() {
			next = "(user managed)"
		}
		last := day(s.LastRotated)
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", s.Name, last, next, s.Frequency, s.State)
	}
	b.WriteString("\n---\n\n## 🔑 Secret Inventory\n\n")
	b.WriteString("| Secret | Purpose | Storage | Encryption | Access |\n|--------|---------|---------|------------|--------|\n")
	for _, s := range r.Inventory {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", s.Name, cell(s.Purpose), cell(s.Storage), cell(s.Encryption), cell(s.Access))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
