package scan

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// sarifSchema is the official SARIF 2.1.0 JSON schema (OASIS, from
// github.com/oasis-tcs/sarif-spec sarif-2.1/schema/sarif-schema-2.1.0.json,
// commit a560296ca8c921f3bdb8d4a8db57ab83dae968a7), checked in: tests run
// without a network.
func sarifSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "sarif-schema-2.1.0.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	const url = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
	if err := c.AddResource(url, doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile(url)
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

// CheckSARIF validates a SARIF log against the official schema.
func CheckSARIF(t *testing.T, b []byte) error {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return err
	}
	return sarifSchema(t).Validate(doc)
}

func TestWriteSARIF(t *testing.T) {
	fs := []Finding{
		{Secret: "JWT_SECRET", Env: "prod", Version: 2, Current: true, Fingerprint: "fp:0123", Encoding: EncRaw, Where: WhereWorktree, Path: "config/app.yaml", Line: 3, Column: 5, Redacted: "c2Vj…(88 chars)"},
		{Secret: "JWT_SECRET", Env: "prod", Version: 1, Fingerprint: "fp:4567", Encoding: EncBase64, Where: WhereCommit, Commit: strings.Repeat("a", 40), AuthorDate: time.Unix(0, 0), Path: "dir with space/a:b.txt", Line: 1, Column: 1, Redacted: "x…(9 chars)"},
		{Rule: "github-pat", Current: true, Where: WhereIndex, Blob: "b1", Path: "x.txt", Line: 7, Column: 2, Redacted: "ghp_…(40 chars)"},
		{Rule: "custom", Current: true, Where: WhereUnreachable, Blob: strings.Repeat("b", 40), Line: 1, Redacted: "abc…(30 chars)"},
	}
	for i := range fs {
		fs[i].ID = FindingID(fs[i])
	}
	var buf bytes.Buffer
	if err := WriteSARIF(&buf, fs, DefaultRules(), ""); err != nil {
		t.Fatal(err)
	}
	if err := CheckSARIF(t, buf.Bytes()); err != nil {
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
	if got != "rekey-managed-secreterrorwarninggithub-paterror0" {
		t.Fatalf("results: %s", got)
	}
	if u := rs[1].Locations[0].PhysicalLocation.ArtifactLocation.URI; u != "dir%20with%20space/a:b.txt" {
		t.Fatalf("uri = %q", u)
	}
	if rs[2].PartialFingerprints["rekeyFindingId/v1"] != "x.txt:github-pat:7" {
		t.Fatalf("fingerprints = %v", rs[2].PartialFingerprints)
	}
	// Clean: an empty results array.
	buf.Reset()
	if err := WriteSARIF(&buf, nil, nil, ""); err != nil {
		t.Fatal(err)
	}
	if err := CheckSARIF(t, buf.Bytes()); err != nil || !strings.Contains(buf.String(), `"results": []`) {
		t.Fatalf("clean: %v\n%s", err, buf.String())
	}
	// The schema rejects broken logs.
	for _, bad := range []string{`{"version":"2.0.0","runs":[]}`, `{"version":"2.1.0","runs":[{"tool":{"driver":{}}}]}`,
		`{"version":"2.1.0","runs":[{"tool":{"driver":{"name":"rekey"}},"results":[{"message":{"text":"x"},"level":"fatal"}]}]}`} {
		if CheckSARIF(t, []byte(bad)) == nil {
			t.Fatalf("CheckSARIF accepted %s", bad)
		}
	}
}
