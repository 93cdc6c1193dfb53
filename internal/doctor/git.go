package doctor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/gitsafe"
)

// gitRepo runs git in a repository. Its children get no secret: values are
// compared in-process, and the environment is stripped of rekey's keys and of
// every managed name.
type gitRepo struct {
	root string
	env  []string
}

// findGit finds the repository dir is in; nil and why when there is none.
func findGit(dir string, env []string) (*gitRepo, string) {
	if _, err := exec.LookPath("git"); err != nil {
		return nil, "git is not installed"
	}
	g := &gitRepo{env: env}
	out, err := g.run(dir, "rev-parse", "--show-toplevel")
	if err != nil {
		return nil, "not a git repository"
	}
	g.root = strings.TrimRight(string(out), "\r\n")
	if r, err := filepath.EvalSymlinks(g.root); err == nil {
		g.root = r
	}
	return g, ""
}

// gitEnv is the environment of git children: environ without REKEY_* and
// without any variable named like a managed secret or derived value of cfg
// (rekey doctor may run under rekey run).
func gitEnv(cfg *config.Config, environ []string) []string {
	drop := map[string]bool{}
	for _, s := range cfg.Secrets {
		drop[s.Name] = true
	}
	for _, e := range cfg.Environments {
		for _, dv := range cfg.DerivedFor(e.Name) {
			drop[dv.Name] = true
		}
	}
	vars := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		if strings.HasPrefix(k, "REKEY_") || drop[k] {
			continue
		}
		out = append(out, k+"="+vars[k])
	}
	return append(out, "GIT_TERMINAL_PROMPT=0", "LC_ALL=C")
}

func (g *gitRepo) cmd(dir string, args ...string) *exec.Cmd {
	c := gitsafe.CommandEnv(context.Background(), g.env, dir, args...)
	c.Stdin = nil
	return c
}

func (g *gitRepo) run(dir string, args ...string) ([]byte, error) {
	var errb bytes.Buffer
	c := g.cmd(dir, args...)
	c.Stderr = &errb
	out, err := c.Output()
	if err != nil {
		msg := strings.TrimSpace(errb.String())
		if i := strings.IndexByte(msg, '\n'); i >= 0 {
			msg = msg[:i]
		}
		return out, fmt.Errorf("git %s: %v: %s", args[0], err, msg)
	}
	return out, nil
}

// inside reports whether path is in the repository, and its slash path there.
func (g *gitRepo) inside(path string) (string, bool) {
	return insideDir(g.root, path)
}

// insideDir reports whether path is dir or below it (after resolving
// symbolic links of the folders that exist), and the relative slash path.
func insideDir(dir, path string) (string, bool) {
	if r, err := filepath.EvalSymlinks(dir); err == nil {
		dir = r
	}
	path = resolveExisting(path)
	r, err := filepath.Rel(dir, path)
	if err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) || filepath.IsAbs(r) {
		return "", false
	}
	return filepath.ToSlash(r), true
}

// resolveExisting resolves the symbolic links of the longest existing prefix of path.
func resolveExisting(path string) string {
	path = filepath.Clean(path)
	if r, err := filepath.EvalSymlinks(path); err == nil {
		return r
	}
	parent := filepath.Dir(path)
	if parent == path {
		return path
	}
	return filepath.Join(resolveExisting(parent), filepath.Base(path))
}

// ignored reports whether git ignores the repository path rel.
func (g *gitRepo) ignored(rel string) (bool, error) {
	c := g.cmd(g.root, "check-ignore", "-q", "--", rel)
	err := c.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return true, nil
	case errors.As(err, &ee) && ee.ExitCode() == 1:
		return false, nil
	default:
		return false, fmt.Errorf("git check-ignore: %v", err)
	}
}
