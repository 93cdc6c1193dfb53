package dotenv

// Interop: a file edited by Set must read back, in every common dotenv
// parser, as the values Get reports. Checked here: Go godotenv v1.5.1 (a
// test dependency), python-dotenv (python3 -c) and Node dotenv@16 (installed
// on first use into testdata/node_modules, which is git-ignored).
//
// Rust's dotenvy cannot be installed here (no Rust toolchain and no crates
// registry is reachable), so it is not run. The quoting rules were checked
// against its parser's source instead: unquoted values must not contain
// whitespace, quotes, backslashes or $, single quotes are fully literal, and
// a comment after a value needs a space before the '#'.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/joho/godotenv"
	"github.com/rekeyhq/rekey/internal/testkit"
)

const interopBase = "# interop fixture: every value is fake\n" +
	"export EXPORTED=plain\n" +
	"SPACED = spaced-value\n" +
	"SINGLE='single # not a comment'\n" +
	"DOUBLE=\"line1\\nline2\"\n" +
	"MULTI=\"first\nsecond\"\n" +
	"KEEP_MULTI=\"kept\nas is\"  # c\n" +
	"INLINE=value # comment\n" +
	"QUOTED_INLINE='v' # comment\n" +
	"EMPTY=\n" +
	"CRLF=crlf\r\n" +
	"OLD_SINGLE='x'\n" +
	"OLD_DOUBLE=\"x\" # c\n" +
	"TWO_HASH=x # a # b\n" +
	"TIGHT=\"x\"#c\n" +
	"BLANK_COMMENT=  # c\n" +
	"\n" +
	"  # indented comment\n"

// interopSets covers every quoting branch of Set.
var interopSets = []struct{ key, value string }{
	{"B64", "q8+Vx/3kZmFrZQ=="},  // plain, appended
	{"B64URL", "q8-Vx_3kZmFrZQ"}, // plain
	{"HEX", "deadbeef00c0ffee"},  // plain
	{"URL", "postgres://app%40corp:p@ss@db.example.com:5432/app?ssl=true"}, // plain
	{"DOLLAR", "pa$$ word $HOME $(x) $ end"},                               // single quotes
	{"HASH", "abc#def # ghi"},                                              // single quotes
	{"EXPORTED", "Zm9v+/="},                                                // plain, export kept
	{"SPACED", "a b"},                                                      // single quotes, spacing kept
	{"SINGLE", "plain-single"},                                             // plain in old single quotes
	{"DOUBLE", "plain/double"},                                             // plain in old double quotes
	{"MULTI", "collapsed"},                                                 // multi-line becomes one line
	{"INLINE", "with space"},                                               // single quotes, comment kept
	{"QUOTED_INLINE", ""},                                                  // empty, stays ''
	{"EMPTY", "was-empty"},                                                 // plain
	{"CRLF", "crlf $x"},                                                    // single quotes, CRLF kept
	{"OLD_SINGLE", "a b\tc"},                                               // single quotes with a tab
	{"OLD_DOUBLE", `say "hi"`},                                             // double quote char, single quotes
	{"TWO_HASH", "v"},                                                      // plain, quoted for godotenv
	{"TIGHT", "t"},                                                         // space inserted before '#'
	{"BLANK_COMMENT", ""},                                                  // empty with comment: ''
	{"BACKSLASH", `C:\Users\x`},                                            // single quotes
	{"UNICODE", "pässwörd ✓"},                                              // single quotes
	{"LEADING", " lead and trail "},                                        // single quotes keep spaces
	{"BACKTICK", "`cmd`"},                                                  // single quotes
	{"EMPTY_NEW", ""},                                                      // KEY=
	{"JSONISH", `{"a":[1,2]}`},                                             // single quotes
}

// interopFile returns the base file after interopSets and a batch of
// deterministic random values written over lines of every style.
func interopFile(t *testing.T) *File {
	f := mustParse(t, interopBase)
	for _, s := range interopSets {
		if err := f.Set(s.key, s.value); err != nil {
			t.Fatalf("Set(%s): %v", s.key, err)
		}
	}
	// Random values over an alphabet of troublemakers, set over old lines
	// of every quoting style.
	styles := []string{"%s=old\n", "%s='old'\n", "%s=\"old\"\n", "%s=old # c\n", "%s=\"o\"#c\n",
		"%s=  # c\n", "export %s = old # a # b\n", "%s=\"m\nl\"\n"}
	alphabet := []rune("aZ09_-.:/+=@%,~?&*!^[]$#'\"\\` \t{}()<>;|ü\u00a0\u0085\u2028\ufeff✓")
	r := rand.New(rand.NewPCG(1, 2))
	var sb strings.Builder
	var keys []string
	for i := range 400 {
		key := fmt.Sprintf("R%03d", i)
		fmt.Fprintf(&sb, styles[i%len(styles)], key)
		keys = append(keys, key)
	}
	g := mustParse(t, sb.String())
	written := 0
	for _, key := range keys {
		n := r.IntN(12)
		v := make([]rune, n)
		for j := range v {
			v[j] = alphabet[r.IntN(len(alphabet))]
		}
		if err := g.Set(key, string(v)); err != nil {
			g.Delete(key) // not portable: leave it out
			continue
		}
		written++
	}
	if written < 100 {
		t.Fatalf("only %d random values were writable", written)
	}
	data := append(f.Bytes(), g.Bytes()...)
	return mustParse(t, string(data))
}

func TestInterop(t *testing.T) {
	f := interopFile(t)
	data := f.Bytes()
	want := values(f)
	for _, s := range interopSets {
		if want[s.key] != s.value {
			t.Fatalf("Get(%s) differs from the value set", s.key)
		}
	}
	path := filepath.Join(t.TempDir(), "interop.env")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, got map[string]string) {
		t.Helper()
		if d := mapDiff(got, want); d != nil {
			t.Errorf("%d keys read differently: %v", len(d), d)
		}
	}

	t.Run("godotenv", func(t *testing.T) {
		got, err := godotenv.Parse(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		check(t, got)
	})

	t.Run("python-dotenv", func(t *testing.T) {
		if _, err := exec.LookPath("python3"); err != nil {
			testkit.SkipOrFail(t, "python3 not installed")
		}
		if err := exec.Command("python3", "-c", "import dotenv").Run(); err != nil {
			testkit.SkipOrFail(t, "python-dotenv not installed (pip install python-dotenv)")
		}
		check(t, runJSON(t, "python3", "-c", pythonScript, path))
	})

	t.Run("node-dotenv", func(t *testing.T) {
		mod := nodeDotenv(t)
		const script = `const fs = require("fs");
const dotenv = require(process.argv[1]);
console.log(JSON.stringify(dotenv.parse(fs.readFileSync(process.argv[2]))));`
		check(t, runJSON(t, "node", "-e", script, mod, path))
	})
}

// TestInteropRefusalsNeeded shows that the values Quote refuses beyond the
// obvious (single quote, line break, NUL, invalid UTF-8) are misread by at
// least one parser when written naively in single quotes; if a parser
// upgrade makes a refusal unnecessary, this test says so.
func TestInteropRefusalsNeeded(t *testing.T) {
	tests := []struct{ name, value string }{
		{"dollar brace", "x${HOME}y"}, // python-dotenv expands it
		{"double backslash", `a\\b`},  // python-dotenv unescapes it
		{"trailing backslash", `a\`},  // godotenv reads \' as an escaped quote
	}
	python := exec.Command("python3", "-c", "import dotenv").Run() == nil
	if !python {
		testkit.SkipOrFail(t, "python3 with python-dotenv not installed")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Quote(tt.value); err == nil {
				t.Fatal("Quote accepts the value")
			}
			data := "K='" + tt.value + "'\nNEXT='n'\n"
			want := map[string]string{"K": tt.value, "NEXT": "n"}
			var misread []string
			if got, err := godotenv.Parse(strings.NewReader(data)); err != nil || mapDiff(got, want) != nil {
				misread = append(misread, "godotenv")
			}
			path := filepath.Join(t.TempDir(), "naive.env")
			if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
				t.Fatal(err)
			}
			if mapDiff(runJSON(t, "python3", "-c", pythonScript, path), want) != nil {
				misread = append(misread, "python-dotenv")
			}
			if len(misread) == 0 {
				t.Error("godotenv and python-dotenv both read the value back; the refusal may be unnecessary")
			}
		})
	}
}

const pythonScript = `import json, sys
from dotenv import dotenv_values
print(json.dumps(dotenv_values(sys.argv[1], encoding="utf-8")))`

// FuzzGodotenv writes a value over a line of each style (with a fuzzed
// inline comment) and checks that godotenv reads the result as Get does.
func FuzzGodotenv(f *testing.F) {
	for i, v := range []string{"v", "a b", "", "a#b", "$HOME", "`x`", `"q"`, "ü\u00a0", "a\\b", "x # y"} {
		f.Add(v, " c # d ' \" e", uint8(i))
		f.Add(v, "", uint8(i+3))
	}
	styles := []string{"K=old", "K='old'", "K=\"old\"", "K=", "K=  ", "export  K = old", "K=\"m\nl\"", "K=\"x\""}
	f.Fuzz(func(t *testing.T, value, comment string, style uint8) {
		if strings.ContainsAny(comment, "\r\n") {
			return
		}
		line := styles[int(style)%len(styles)]
		switch style / 16 % 3 {
		case 1:
			line += " #" + comment
		case 2:
			line += "#" + comment // a comment only after a closing quote
		}
		in := "PREV=p\n" + line + "\nNEXT=n\n"
		file, err := Parse("fuzz.env", []byte(in))
		if err != nil {
			return
		}
		if err := file.Set("K", value); err != nil {
			return
		}
		got, err := godotenv.Parse(bytes.NewReader(file.Bytes()))
		if err != nil {
			t.Fatalf("godotenv: %v", err)
		}
		if d := mapDiff(got, values(file)); d != nil {
			t.Fatalf("godotenv reads differently: %v", d)
		}
	})
}

// runJSON runs a command that prints a JSON object of strings. Its output
// is not logged: it holds values.
func runJSON(t *testing.T, name string, args ...string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v (stderr: %d bytes, not shown)", name, err, stderr.Len())
	}
	var m map[string]*string
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("%s: decode output: %v", name, err)
	}
	got := make(map[string]string)
	for k, v := range m {
		if v == nil {
			t.Errorf("%s reads %s as having no value", name, k)
			continue
		}
		got[k] = *v
	}
	return got
}

// nodeDotenv returns the path of the Node dotenv@16 package, installing it
// into testdata/node_modules on first use.
func nodeDotenv(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		testkit.SkipOrFail(t, "node not installed")
	}
	mod, err := filepath.Abs(filepath.Join("testdata", "node_modules", "dotenv"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(mod, "package.json")); err == nil {
		return mod
	}
	if _, err := exec.LookPath("npm"); err != nil {
		testkit.SkipOrFail(t, "npm not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "install", "--no-save", "--no-package-lock",
		"--no-audit", "--no-fund", "--prefix", "testdata", "dotenv@16")
	if out, err := cmd.CombinedOutput(); err != nil {
		testkit.SkipOrFail(t, "npm install dotenv@16: %v\n%s", err, out)
	}
	return mod
}
