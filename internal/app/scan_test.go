package app

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/scan"
)

// TestSuppressedIDs: the allow file's ids (comments and blank lines
// ignored) and a baseline report's ids, recomputed from its findings.
func TestSuppressedIDs(t *testing.T) {
	dir := t.TempDir()
	s := New(Options{Dir: dir})
	if err := os.WriteFile(filepath.Join(dir, "allow"), []byte("# fixtures\n\nfp:0123456789abcdef # a test value\n a.txt:aws-access-key:3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base, _ := json.Marshal([]scan.Finding{{Path: "b.txt", Secret: "JWT_SECRET", Env: "production", Version: 2, Line: 7}})
	if err := os.WriteFile(filepath.Join(dir, "base.json"), base, 0o600); err != nil {
		t.Fatal(err)
	}
	ids, err := s.suppressedIDs("allow", "base.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"fp:0123456789abcdef", "a.txt:aws-access-key:3", "b.txt:JWT_SECRET/production/v2:7"} {
		if !ids[id] {
			t.Errorf("%q not suppressed (got %v)", id, ids)
		}
	}
	if len(ids) != 3 {
		t.Errorf("ids = %v", ids)
	}
	if ids, err := s.suppressedIDs("", ""); err != nil || len(ids) != 0 {
		t.Errorf("no flags: %v, %v", ids, err)
	}
	if _, err := s.suppressedIDs("missing", ""); rekey.ErrorCode(err) != rekey.CodeNotFound {
		t.Errorf("missing allow file: %v", err)
	}
	if _, err := s.suppressedIDs("", "allow"); rekey.ErrorCode(err) != rekey.CodeInvalid {
		t.Errorf("a baseline that is not a report: %v", err)
	}
}

func TestScanRulesExclusive(t *testing.T) {
	s := New(Options{Dir: t.TempDir()})
	if _, err := s.scanRules(ScanRequest{Rules: "r.toml", NoRules: true}); rekey.ErrorCode(err) != rekey.CodeInvalid {
		t.Errorf("--rules with --no-rules: %v", err)
	}
	if r, err := s.scanRules(ScanRequest{NoRules: true}); r != nil || err != nil {
		t.Errorf("--no-rules: %v, %v", r, err)
	}
	if r, err := s.scanRules(ScanRequest{}); r == nil || err != nil {
		t.Errorf("default rules: %v, %v", r, err)
	}
}
