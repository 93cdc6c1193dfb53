package config

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// FuzzParse checks that Parse never panics, that it fails only with an
// *Error at a line, and that whatever it accepts survives Marshal.
func FuzzParse(f *testing.F) {
	f.Add([]byte(testkit.ReadFile(f, "testdata/full.yaml")))
	for _, tc := range errorCases {
		f.Add([]byte(tc.yaml))
	}
	f.Add([]byte("version: 1\nenvironments: &e\n  prod: {targets: {app: {}}}\nsecrets: {K: {kind: manual}}\nderived: *e\n"))
	f.Add([]byte("x: &a [*a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("rekey.yaml", data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Line < 1 || e.Msg == "" {
				t.Fatalf("Parse error %T %q: want an *Error with a line", err, err)
			}
			return
		}
		out, err := Marshal(c)
		if err != nil {
			t.Fatalf("Marshal of a parsed Config: %v", err)
		}
		c2, err := Parse("rekey.yaml", out)
		if err != nil {
			t.Fatalf("Parse(Marshal(c)): %v\n%s", err, out)
		}
		if diff := cmp.Diff(c, c2, ignoreLines); diff != "" {
			t.Fatalf("round trip mismatch:\n%s\n%s", diff, out)
		}
	})
}

// FuzzMarshalText checks that free text and paths survive Marshal and Parse
// whatever characters they hold.
func FuzzMarshalText(f *testing.F) {
	for _, s := range []string{"plain", "123", "yes", "a: b", "#x", " lead", "multi\nline\n", "{{ x }}", "'q\"", "\t", "~", "- x", "é"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, text, name string) {
		if !utf8.ValidString(text) || !utf8.ValidString(name) || name == "" || strings.ContainsAny(name, "/\\\x00") || name == "." || name == ".." {
			t.Skip()
		}
		dir := "/tmp/rekey-fuzz"
		c := &Config{
			Path: dir + "/rekey.yaml", Dir: dir, Version: 1,
			Store:        Store{Path: dir + "/.rekey/rekey.db", MasterKey: "file:" + dir + "/" + name},
			Environments: []Environment{{Name: "dev", Targets: []Target{{Name: "app", Type: "dotenv", Path: filepath.Clean(dir + "/" + name)}}}},
			Secrets: []rekey.Spec{{Name: "K", Kind: rekey.KindGenerated, Generator: rekey.Generator{Bytes: 32, Encoding: rekey.EncBase64},
				Purpose: text, Storage: text, Encryption: text, Access: text}},
		}
		if tm, err := rekey.ParseTemplate(text); err == nil && len(tm.Refs()) == 0 {
			c.Derived = []rekey.Derived{{Name: "D", Template: tm}}
		}
		out, err := Marshal(c)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		got, err := Parse(c.Path, out)
		if err != nil {
			t.Fatalf("Parse(Marshal(c)): %v\n%s", err, out)
		}
		if diff := cmp.Diff(c, got, ignoreLines); diff != "" {
			t.Fatalf("round trip mismatch:\n%s\n%s", diff, out)
		}
	})
}
