package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestEnvVarsDocumented keeps the README's table of environment variables
// true: every variable the non-test code of the module reads (a Getenv,
// getenv or LookupEnv of a string literal or constant, every "REKEY_*"
// literal, and what the standard library functions it calls read) is a row
// of the table, and every row names a variable rekey reads.
func TestEnvVarsDocumented(t *testing.T) {
	root := filepath.Join("..", "..")
	documented := readmeEnvVars(t, filepath.Join(root, "README.md"))
	read := sourceEnvVars(t, root)
	if len(read) < 10 {
		t.Fatalf("found only %d variables read in the source: the scan is broken: %v", len(read), read)
	}
	for _, v := range slices.Sorted(mapKeys(read)) {
		if !documented[v] {
			t.Errorf("the code reads %s (%s) but the README's table of environment variables does not list it: add a row", v, read[v])
		}
	}
	for _, v := range slices.Sorted(mapKeys(documented)) {
		if _, ok := read[v]; !ok {
			t.Errorf("the README's table of environment variables lists %s, which no code reads: remove the row, or fix this test", v)
		}
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// readmeEnvVars returns the variables of the first column of the table
// under "## Environment variables" (a cell may name several: `A`, `B`;
// `PG*` stands for the libpq variables).
func readmeEnvVars(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, sec, ok := strings.Cut(string(b), "\n## Environment variables\n")
	if !ok {
		t.Fatal("README.md has no section ## Environment variables")
	}
	if i := strings.Index(sec, "\n## "); i >= 0 {
		sec = sec[:i]
	}
	name := regexp.MustCompile("`([A-Z][A-Z0-9_]*\\*?)`")
	out := map[string]bool{}
	for _, line := range strings.Split(sec, "\n") {
		cells := strings.Split(line, "|")
		if len(cells) < 3 || strings.HasPrefix(strings.TrimSpace(cells[1]), "---") {
			continue
		}
		first := cells[1]
		if i := strings.Index(first, "("); i >= 0 {
			first = first[:i] // `PG*` (`PGHOST`, ...): examples, not rows
		}
		for _, m := range name.FindAllStringSubmatch(first, -1) {
			out[m[1]] = true
		}
	}
	if len(out) == 0 {
		t.Fatal("the README's ## Environment variables section has no table rows")
	}
	return out
}

// stdlibReads are the variables standard library (and driver) functions
// rekey calls read on its behalf.
var stdlibReads = map[string][]string{
	"os.UserHomeDir":  {"HOME"},
	"os.UserCacheDir": {"XDG_CACHE_HOME", "HOME"},
	"os.TempDir":      {"TMPDIR"},
	"os.MkdirTemp":    {"TMPDIR"},
	"os.CreateTemp":   {"TMPDIR"},
	"exec.LookPath":   {"PATH"},
	"exec.Command":    {"PATH"},
	"pgx.ParseConfig": {"PG*"},
	"pgx.Connect":     {"PG*"},
}

// sourceEnvVars walks the module's non-test Go files (not examples/: the
// reference app is not rekey) and returns each variable read with where.
func sourceEnvVars(t *testing.T, root string) map[string]string {
	t.Helper()
	fset := token.NewFileSet()
	var files []*ast.File
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); p != root && (n == "examples" || n == "testdata" || strings.HasPrefix(n, ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		files = append(files, f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// String constants by name (a name declared twice keeps its first value;
	// a constant defined as another package's constant is resolved below).
	consts := map[string]ast.Expr{}
	for _, f := range files {
		for _, d := range f.Decls {
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.CONST {
				for _, sp := range g.Specs {
					vs := sp.(*ast.ValueSpec)
					for i, n := range vs.Names {
						if i < len(vs.Values) {
							if _, dup := consts[n.Name]; !dup {
								consts[n.Name] = vs.Values[i]
							}
						}
					}
				}
			}
		}
	}
	var resolve func(e ast.Expr, depth int) (string, bool)
	resolve = func(e ast.Expr, depth int) (string, bool) {
		if depth > 5 {
			return "", false
		}
		switch x := e.(type) {
		case *ast.BasicLit:
			s, err := strconv.Unquote(x.Value)
			return s, err == nil && x.Kind == token.STRING
		case *ast.Ident:
			if v, ok := consts[x.Name]; ok {
				return resolve(v, depth+1)
			}
		case *ast.SelectorExpr:
			if v, ok := consts[x.Sel.Name]; ok {
				return resolve(v, depth+1)
			}
		}
		return "", false
	}
	read := map[string]string{}
	rekeyLit := regexp.MustCompile(`^REKEY_[A-Z0-9_]*[A-Z0-9]$`)
	for _, f := range files {
		where := func(n ast.Node) string {
			p := fset.Position(n.Pos())
			rel, _ := filepath.Rel(root, p.Filename)
			return rel + ":" + strconv.Itoa(p.Line)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.BasicLit:
				if s, err := strconv.Unquote(x.Value); err == nil && x.Kind == token.STRING && rekeyLit.MatchString(s) {
					read[s] = where(x)
				}
			case *ast.CallExpr:
				var fn string
				switch c := x.Fun.(type) {
				case *ast.Ident:
					fn = c.Name
				case *ast.SelectorExpr:
					fn = c.Sel.Name
					if pkg, ok := c.X.(*ast.Ident); ok {
						for _, v := range stdlibReads[pkg.Name+"."+c.Sel.Name] {
							read[v] = where(x) + " (" + pkg.Name + "." + c.Sel.Name + ")"
						}
					}
				}
				if (fn == "Getenv" || fn == "getenv" || fn == "LookupEnv") && len(x.Args) == 1 {
					if s, ok := resolve(x.Args[0], 0); ok {
						read[s] = where(x)
					}
				}
			}
			return true
		})
	}
	return read
}
