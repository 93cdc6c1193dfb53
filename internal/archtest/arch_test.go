// Package archtest holds the test that keeps ARCHITECTURE.md's import
// rules true: the domain imports nothing of the module, libraries only the
// domain and other libraries, adapters no other adapter, nothing below
// cmd/ imports cmd/ or examples/, and no non-test code breaks the size
// limits (no function over 100 lines, no file over 700 lines).
package archtest

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/rekeyhq/rekey"

// layers: every package of the module belongs to one (a package missing
// from the table fails the test, so a new one is placed on purpose).
var layers = map[string]string{
	".": "domain",

	"seal": "library", "dotenv": "library", "storetest": "library",
	"internal/safefile": "library", "internal/textsafe": "library", "internal/gitsafe": "library",
	"internal/flock": "library", "internal/testhooks": "library", "internal/fileperm": "library",
	"internal/proc": "library", "internal/pgcluster": "library", "internal/pgtest": "library",
	"internal/sshtest": "library",

	"internal/config": "adapter", "internal/sqlite": "adapter", "internal/postgres": "adapter",
	"internal/reencrypt": "adapter", "internal/services": "adapter", "internal/verify": "adapter",
	"internal/scan": "adapter", "internal/report": "adapter", "internal/envfile": "adapter",
	"internal/notify": "adapter", "internal/sshhost": "adapter",
	"internal/cmdtarget": "adapter",

	"internal/engine": "engine",

	"internal/app": "app", "internal/doctor": "app", "internal/approval": "app",
	"internal/demo": "app", "internal/demo/atlasdemo": "app",

	"cmd/rekey":         "cmd",
	"internal/archtest": "test",
	"internal/testkit":  "test",
	"bench":             "test",
}

// may says which layers a layer may import.
var may = map[string][]string{
	"domain":  {},
	"library": {"domain", "library"},
	"adapter": {"domain", "library"},
	"engine":  {"domain", "library"},
	"app":     {"domain", "library", "adapter", "engine", "app"},
	"cmd":     {"domain", "library", "adapter", "engine", "app"},
	"test":    {"domain", "library", "adapter", "engine", "app", "cmd"},
	"example": {"domain", "library", "adapter", "example"},
}

func layerOf(pkg string) (string, bool) {
	if pkg == "examples" || strings.HasPrefix(pkg, "examples/") {
		return "example", true
	}
	l, ok := layers[pkg]
	return l, ok
}

type goPkg struct {
	imports map[string]bool
	files   []string
}

// load parses every non-test Go file of the module (imports only).
func load(t *testing.T) (string, map[string]*goPkg) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	pkgs := map[string]*goPkg{}
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != root && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(p))
		rel = filepath.ToSlash(rel)
		gp := pkgs[rel]
		if gp == nil {
			gp = &goPkg{imports: map[string]bool{}}
			pkgs[rel] = gp
		}
		gp.files = append(gp.files, p)
		for _, im := range f.Imports {
			path, _ := strconv.Unquote(im.Path.Value)
			if path == module {
				gp.imports["."] = true
			} else if strings.HasPrefix(path, module+"/") {
				gp.imports[strings.TrimPrefix(path, module+"/")] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return root, pkgs
}

// TestImportRules: each package imports only the layers its own may.
func TestImportRules(t *testing.T) {
	_, pkgs := load(t)
	names := make([]string, 0, len(pkgs))
	for n := range pkgs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		l, ok := layerOf(n)
		if !ok {
			t.Errorf("package %s is in no layer: place it in internal/archtest (and ARCHITECTURE.md)", n)
			continue
		}
		for im := range pkgs[n].imports {
			il, ok := layerOf(im)
			if !ok {
				continue // reported as a package of its own
			}
			allowed := false
			for _, m := range may[l] {
				allowed = allowed || m == il
			}
			if l == "adapter" && il == "adapter" {
				allowed = false
			}
			if !allowed {
				t.Errorf("%s (%s) imports %s (%s)", n, l, im, il)
			}
		}
	}
}

// TestSizeLimits: no non-test function over 100 lines, no non-test file
// over 700 lines.
func TestSizeLimits(t *testing.T) {
	_, pkgs := load(t)
	for _, gp := range pkgs {
		for _, p := range gp.files {
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, p, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			if n := fset.Position(f.End()).Line; n > 700 {
				t.Errorf("%s: %d lines (limit 700): split it by concern", p, n)
			}
			for _, d := range f.Decls {
				fd, ok := d.(*ast.FuncDecl)
				if !ok || fd.Body == nil {
					continue
				}
				if n := fset.Position(fd.End()).Line - fset.Position(fd.Pos()).Line + 1; n > 100 {
					t.Errorf("%s: func %s is %d lines (limit 100)", p, fd.Name.Name, n)
				}
			}
		}
	}
}
