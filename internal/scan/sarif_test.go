package scan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"
)

// CheckSARIF checks a SARIF log against the requirements of the SARIF 2.1.0
// JSON schema that rekey's output exercises (required properties, enums,
// minimums, formats), without the schema itself (no network in tests).
func CheckSARIF(b []byte) error {
	var log map[string]any
	if err := json.Unmarshal(b, &log); err != nil {
		return err
	}
	str := func(m map[string]any, k string) (string, bool) { s, ok := m[k].(string); return s, ok }
	obj := func(v any) (map[string]any, bool) { m, ok := v.(map[string]any); return m, ok }
	if v, _ := str(log, "version"); v != "2.1.0" {
		return fmt.Errorf("sarifLog.version = %q, want 2.1.0 (required)", v)
	}
	if s, _ := str(log, "$schema"); s != "https://json.schemastore.org/sarif-2.1.0.json" {
		return fmt.Errorf("$schema = %q", s)
	}
	runs, ok := log["runs"].([]any)
	if !ok || len(runs) != 1 {
		return fmt.Errorf("sarifLog.runs: required array, want one run")
	}
	run, ok := obj(runs[0])
	if !ok {
		return fmt.Errorf("run: not an object")
	}
	tool, ok := obj(run["tool"])
	if !ok {
		return fmt.Errorf("run.tool: required")
	}
	drv, ok := obj(tool["driver"])
	if !ok {
		return fmt.Errorf("tool.driver: required")
	}
	if n, _ := str(drv, "name"); n != "rekey" {
		return fmt.Errorf("driver.name = %q (required)", n)
	}
	if u, ok := str(drv, "informationUri"); ok {
		if _, err := url.Parse(u); err != nil {
			return fmt.Errorf("driver.informationUri: %v", err)
		}
	}
	rules, _ := drv["rules"].([]any)
	ruleIDs := map[string]int{}
	for i, r := range rules {
		rm, ok := obj(r)
		if !ok {
			return fmt.Errorf("rules[%d]: not an object", i)
		}
		id, ok := str(rm, "id")
		if !ok || id == "" {
			return fmt.Errorf("rules[%d].id: required", i)
		}
		if _, dup := ruleIDs[id]; dup {
			return fmt.Errorf("rules[%d].id %q: duplicate", i, id)
		}
		ruleIDs[id] = i
		if sd, ok := rm["shortDescription"]; ok {
			if m, ok := obj(sd); !ok || m["text"] == nil {
				return fmt.Errorf("rules[%d].shortDescription.text: required", i)
			}
		}
		if dc, ok := obj(rm["defaultConfiguration"]); ok {
			if err := level(dc["level"]); err != nil {
				return fmt.Errorf("rules[%d].defaultConfiguration.%v", i, err)
			}
		}
	}
	results, ok := run["results"].([]any)
	if !ok {
		return fmt.Errorf("run.results: want an array (empty when clean)")
	}
	for i, r := range results {
		rm, ok := obj(r)
		if !ok {
			return fmt.Errorf("results[%d]: not an object", i)
		}
		msg, ok := obj(rm["message"])
		if !ok {
			return fmt.Errorf("results[%d].message: required", i)
		}
		if t, ok := str(msg, "text"); !ok || t == "" {
			return fmt.Errorf("results[%d].message: needs text or id", i)
		}
		if err := level(rm["level"]); err != nil {
			return fmt.Errorf("results[%d].%v", i, err)
		}
		id, _ := str(rm, "ruleId")
		ri, hasIdx := rm["ruleIndex"].(float64)
		if want, ok := ruleIDs[id]; !ok || !hasIdx || int(ri) != want {
			return fmt.Errorf("results[%d]: ruleId %q / ruleIndex %v do not name a driver rule", i, id, rm["ruleIndex"])
		}
		if pf, ok := rm["partialFingerprints"]; ok {
			m, ok := obj(pf)
			if !ok {
				return fmt.Errorf("results[%d].partialFingerprints: not an object", i)
			}
			for k, v := range m {
				if _, ok := v.(string); !ok {
					return fmt.Errorf("results[%d].partialFingerprints[%s]: not a string", i, k)
				}
			}
		}
		locs, _ := rm["locations"].([]any)
		for j, l := range locs {
			lm, _ := obj(l)
			pl, ok := obj(lm["physicalLocation"])
			if !ok {
				return fmt.Errorf("results[%d].locations[%d].physicalLocation: missing", i, j)
			}
			al, ok := obj(pl["artifactLocation"])
			if !ok {
				return fmt.Errorf("physicalLocation: needs artifactLocation or address")
			}
			u, ok := str(al, "uri")
			if !ok {
				return fmt.Errorf("artifactLocation.uri: missing")
			}
			if pu, err := url.Parse(u); err != nil || pu.Scheme != "" {
				return fmt.Errorf("artifactLocation.uri %q: want a relative URI reference (%v)", u, err)
			}
			reg, ok := obj(pl["region"])
			if !ok {
				return fmt.Errorf("region: missing")
			}
			if sl, ok := reg["startLine"].(float64); !ok || sl < 1 {
				return fmt.Errorf("region.startLine %v: want an integer >= 1", reg["startLine"])
			}
			if sc, ok := reg["startColumn"].(float64); ok && sc < 1 {
				return fmt.Errorf("region.startColumn %v: want >= 1", sc)
			}
		}
	}
	return nil
}

func level(v any) error {
	switch v {
	case "none", "note", "warning", "error":
		return nil
	}
	return fmt.Errorf("level %v: want none, note, warning or error", v)
}

func TestWriteSARIF(t *testing.T) {
	fs := []Finding{
		{Secret: "JWT_SECRET", Env: "prod", Version: 2, Current: true, Fingerprint: "fp:0123", Encoding: EncRaw, Where: WhereWorktree, Path: "config/app.yaml", Line: 3, Column: 5, Redacted: "c2Vj…(88 chars)"},
		{Secret: "JWT_SECRET", Env: "prod", Version: 1, Fingerprint: "fp:4567", Encoding: EncBase64, Where: WhereCommit, Commit: strings.Repeat("a", 40), AuthorDate: time.Unix(0, 0), Path: "dir with space/a:b.txt", Line: 1, Column: 1, Redacted: "x…(9 chars)"},
		{Rule: "github-token", Current: true, Where: WhereIndex, Blob: "b1", Path: "x.txt", Line: 7, Column: 2, Redacted: "ghp_…(40 chars)"},
		{Rule: "custom", Current: true, Where: WhereUnreachable, Blob: strings.Repeat("b", 40), Line: 1, Redacted: "abc…(30 chars)"},
	}
	for i := range fs {
		fs[i].ID = FindingID(fs[i])
	}
	var buf bytes.Buffer
	if err := WriteSARIF(&buf, fs, DefaultRules(), ""); err != nil {
		t.Fatal(err)
	}
	if err := CheckSARIF(buf.Bytes()); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	var log struct {
		Runs []struct {
			Results []struct {
				RuleID, Level       string
				PartialFingerprints map[string]string
				Locations           []struct {
					PhysicalLocation struct {
						ArtifactLocation struct{ URI string }
					}
				}
			}
		}
	}
	if err := json.Unmarshal(buf.Bytes(), &log); err != nil {
		t.Fatal(err)
	}
	rs := log.Runs[0].Results
	got := fmt.Sprint(rs[0].RuleID, rs[0].Level, rs[1].Level, rs[2].RuleID, rs[2].Level, len(rs[3].Locations))
	if got != "rekey-managed-secreterrorwarninggithub-tokenerror0" {
		t.Fatalf("results: %s", got)
	}
	if u := rs[1].Locations[0].PhysicalLocation.ArtifactLocation.URI; u != "dir%20with%20space/a:b.txt" {
		t.Fatalf("uri = %q", u)
	}
	if rs[2].PartialFingerprints["rekeyFindingId/v1"] != "x.txt:github-token:7" {
		t.Fatalf("fingerprints = %v", rs[2].PartialFingerprints)
	}
	// Clean: an empty results array.
	buf.Reset()
	if err := WriteSARIF(&buf, nil, nil, ""); err != nil {
		t.Fatal(err)
	}
	if err := CheckSARIF(buf.Bytes()); err != nil || !strings.Contains(buf.String(), `"results": []`) {
		t.Fatalf("clean: %v\n%s", err, buf.String())
	}
	// The checker catches broken logs.
	for _, bad := range []string{`{"version":"2.0.0","runs":[]}`, `{"version":"2.1.0","$schema":"https://json.schemastore.org/sarif-2.1.0.json","runs":[{"tool":{"driver":{}}}]}`} {
		if CheckSARIF([]byte(bad)) == nil {
			t.Fatalf("CheckSARIF accepted %s", bad)
		}
	}
}
