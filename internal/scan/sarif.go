package scan

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"
)

// SARIF 2.1.0 output (https://docs.oasis-open.org/sarif/sarif/v2.1.0/).
const (
	SARIFVersion = "2.1.0"
	SARIFSchema  = "https://json.schemastore.org/sarif-2.1.0.json"
	// ManagedRuleID is the SARIF rule of a managed value found.
	ManagedRuleID = "rekey-managed-secret"
)

type sarifLog struct {
	Version string     `json:"version"`
	Schema  string     `json:"$schema"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool    sarifTool     `json:"tool"`
	Results []sarifResult `json:"results"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	InformationURI string      `json:"informationUri,omitempty"`
	Version        string      `json:"version,omitempty"`
	Rules          []sarifRule `json:"rules"`
}

type sarifMessage struct {
	Text string `json:"text"`
}

type sarifRule struct {
	ID               string       `json:"id"`
	Name             string       `json:"name,omitempty"`
	ShortDescription sarifMessage `json:"shortDescription"`
	DefaultConfig    struct {
		Level string `json:"level"`
	} `json:"defaultConfiguration"`
}

type sarifResult struct {
	RuleID              string            `json:"ruleId"`
	RuleIndex           int               `json:"ruleIndex"`
	Level               string            `json:"level"`
	Message             sarifMessage      `json:"message"`
	Locations           []sarifLocation   `json:"locations,omitempty"`
	PartialFingerprints map[string]string `json:"partialFingerprints"`
	Properties          map[string]any    `json:"properties,omitempty"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysical `json:"physicalLocation"`
}

type sarifPhysical struct {
	ArtifactLocation struct {
		URI string `json:"uri"`
	} `json:"artifactLocation"`
	Region struct {
		StartLine   int `json:"startLine"`
		StartColumn int `json:"startColumn,omitempty"`
	} `json:"region"`
}

// uriPath escapes a slash-separated relative path as a URI reference.
func uriPath(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		parts[i] = url.PathEscape(s)
	}
	u := strings.Join(parts, "/")
	if first, _, _ := strings.Cut(u, "/"); strings.Contains(first, ":") {
		u = "./" + u // not a scheme
	}
	return u
}

// WriteSARIF writes findings as a SARIF 2.1.0 log with one run of the tool
// "rekey": a managed value is an error while its version is current and a
// warning once retired; a rule finding is an error. rules describes the
// rules the findings name (nil: ids only). IDs must be set (FindingID).
func WriteSARIF(w io.Writer, findings []Finding, rules *RuleSet, version string) error {
	drv := sarifDriver{Name: "rekey", InformationURI: "https://github.com/rekeyhq/rekey", Version: version}
	index := map[string]int{}
	addRule := func(id, desc string) int {
		if i, ok := index[id]; ok {
			return i
		}
		r := sarifRule{ID: id, Name: id, ShortDescription: sarifMessage{Text: desc}}
		r.DefaultConfig.Level = "error"
		index[id] = len(drv.Rules)
		drv.Rules = append(drv.Rules, r)
		return index[id]
	}
	addRule(ManagedRuleID, "A value rekey manages (a current or retired version) found outside its place")
	if rules != nil {
		for _, r := range rules.Rules {
			addRule(r.ID, r.Description)
		}
	}
	results := []sarifResult{}
	for _, f := range findings {
		res := sarifResult{Level: "error", PartialFingerprints: map[string]string{"rekeyFindingId/v1": f.ID},
			Properties: map[string]any{"where": f.Where}}
		where := f.Where
		if f.Commit != "" {
			res.Properties["commit"] = f.Commit
			where += " " + f.Commit[:min(12, len(f.Commit))]
		}
		if f.Blob != "" {
			res.Properties["blob"] = f.Blob
		}
		if f.Rule != "" {
			res.RuleID = f.Rule
			res.RuleIndex = addRule(f.Rule, f.Rule)
			res.Message.Text = fmt.Sprintf("%s: %s (%s) — a secret rekey does not manage: revoke it where it was issued", f.Rule, f.Redacted, where)
		} else {
			res.RuleID = ManagedRuleID
			res.RuleIndex = index[ManagedRuleID]
			state := "retired version"
			if f.Current {
				state = "CURRENT version: rotate now"
			} else {
				res.Level = "warning"
			}
			res.Message.Text = fmt.Sprintf("%s v%d (%s) %s as %s (%s) %s — %s", f.Secret, f.Version, f.Env, f.Redacted, f.Encoding, where, f.Fingerprint, state)
			res.Properties["secret"], res.Properties["environment"], res.Properties["version"] = f.Secret, f.Env, f.Version
		}
		if f.Path != "" {
			var loc sarifLocation
			loc.PhysicalLocation.ArtifactLocation.URI = uriPath(f.Path)
			loc.PhysicalLocation.Region.StartLine = max(1, f.Line)
			loc.PhysicalLocation.Region.StartColumn = f.Column
			res.Locations = []sarifLocation{loc}
		}
		results = append(results, res)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(sarifLog{Version: SARIFVersion, Schema: SARIFSchema, Runs: []sarifRun{{Tool: sarifTool{Driver: drv}, Results: results}}})
}
