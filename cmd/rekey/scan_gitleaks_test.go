package main

import (
	"cmp"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/internal/testkit"
)

// -gitleaks PATH regenerates testdata/scan_gitleaks_expected.json by running
// that gitleaks binary (v8.30.1: GOBIN=/tmp/gl go install
// github.com/zricethezav/gitleaks/v8@v8.30.1) on the generated repository.
var gitleaksBin = flag.String("gitleaks", "", "regenerate the expected findings of TestScanSameAsGitleaks with this gitleaks binary")

const gitleaksExpected = "testdata/scan_gitleaks_expected.json"

// glRepo builds a deterministic repository: fixed names, dates and
// contents, so its commit ids are the same on every machine.
type glRepo struct {
	t         *testing.T
	dir, home string
	n         int
	commits   map[string]string // message subject → commit id
}

func (r *glRepo) git(date time.Time, args ...string) string {
	r.t.Helper()
	c := exec.Command("git", append([]string{"-C", r.dir, "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", "-c", "core.autocrlf=false"}, args...)...)
	d := date.Format(time.RFC3339)
	c.Env = append(testkit.GitEnv(r.home), "GIT_AUTHOR_NAME=Dana Dev", "GIT_AUTHOR_EMAIL=dana@example.com",
		"GIT_COMMITTER_NAME=Dana Dev", "GIT_COMMITTER_EMAIL=dana@example.com", "GIT_AUTHOR_DATE="+d, "GIT_COMMITTER_DATE="+d)
	out, err := c.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit writes files (an empty content removes the file) and commits them.
func (r *glRepo) commit(msg string, files map[string]string) string {
	r.t.Helper()
	r.n++
	date := time.Date(2025, 1, 1, 10, 0, 0, 0, time.UTC).Add(time.Duration(r.n) * time.Hour)
	for name, content := range files {
		p := filepath.Join(r.dir, filepath.FromSlash(name))
		if content == "" {
			r.git(date, "rm", "-q", name)
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
		r.git(date, "add", name)
	}
	r.git(date, "commit", "-q", "--allow-empty", "-m", msg)
	id := r.git(date, "rev-parse", "HEAD")
	r.commits[strings.SplitN(msg, "\n", 2)[0]] = id
	return id
}

// glTokens are fake provider tokens, the same on every run (a seeded
// PRNG), that both gitleaks' default rules and rekey's built-in ones find.
func glTokens() map[string]string {
	r := rand.New(rand.NewPCG(2026, 12))
	s := func(n int, alphabet string) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		return string(b)
	}
	const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	return map[string]string{
		"aws1":  "AKIA" + s(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"),
		"aws2":  "AKIA" + s(16, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"),
		"ghp1":  "ghp_" + s(36, alnum),
		"ghp2":  "ghp_" + s(36, alnum),
		"gho1":  "gho_" + s(36, alnum),
		"glpat": "glpat-" + s(20, alnum),
	}
}

// genGitleaksRepo generates the comparison repository in dir: planted
// tokens, a secret that stays in its file across several later edits (and
// moves down as lines are added above it), a rename, a token replaced by
// another, a line deleted and restored, a branch merged, and a
// .gitleaksignore with a commit fingerprint and a global one.
func genGitleaksRepo(t *testing.T, dir string) *glRepo {
	testkit.RequireGit(t)
	r := &glRepo{t: t, dir: dir, home: t.TempDir(), commits: map[string]string{}}
	tk := glTokens()
	r.git(time.Time{}, "init", "-q")
	r.commit("initial settings", map[string]string{
		"README.md":      "# demo\n",
		"config/app.env": "# app settings\nAWS_ACCESS_KEY_ID=" + tk["aws1"] + "\nREGION=eu-west-1\n",
	})
	r.commit("deploy script\n\nClones the app with a token.\nSecond line of the body.", map[string]string{
		"deploy.sh": "#!/bin/sh\nset -e\ngit clone https://" + tk["ghp1"] + "@github.com/acme/app\n",
	})
	r.commit("tune settings", map[string]string{
		"config/app.env": "# app settings\n# owner: ops\n\nAWS_ACCESS_KEY_ID=" + tk["aws1"] + "\nREGION=eu-west-1\n",
	})
	r.commit("more settings", map[string]string{
		"config/app.env": "# app settings\n# owner: ops\n\nAWS_ACCESS_KEY_ID=" + tk["aws1"] + "\nREGION=eu-west-1\nLOG_LEVEL=info\n",
	})
	r.commit("reword", map[string]string{
		"config/app.env": "# app settings\n# owner: ops\n\nAWS_ACCESS_KEY_ID=" + tk["aws1"] + "\nREGION=eu-central-1\nLOG_LEVEL=info\n",
	})
	notes := "# CI\nCI_TOKEN=" + tk["glpat"] + "\n\nsteps:\n  oauth: " + tk["gho1"] + "\n"
	r.commit("ci notes", map[string]string{"ci/notes.md": notes})
	r.commit("rotate the AWS key", map[string]string{
		"config/app.env": "# app settings\n# owner: ops\n\nAWS_ACCESS_KEY_ID=" + tk["aws2"] + "\nREGION=eu-central-1\nLOG_LEVEL=info\n",
	})
	r.git(time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC), "mv", "deploy.sh", "scripts-deploy.sh")
	r.commit("rename the deploy script", nil)
	r.commit("edit notes", map[string]string{"ci/notes.md": "# CI notes\n" + notes})
	r.commit("edit notes again", map[string]string{"ci/notes.md": "# CI notes\n" + notes + "more: yes\n"})
	r.commit("drop the oauth line", map[string]string{"ci/notes.md": "# CI notes\n# CI\nCI_TOKEN=" + tk["glpat"] + "\n\nsteps:\nmore: yes\n"})
	r.commit("restore the oauth line", map[string]string{"ci/notes.md": "# CI notes\n" + notes + "more: yes\n"})
	// A branch with a token, merged without conflict (no merge content).
	date := time.Date(2025, 1, 3, 0, 0, 0, 0, time.UTC)
	r.git(date, "checkout", "-q", "-b", "feature")
	r.commit("feature token", map[string]string{"feature.txt": "token = " + tk["ghp2"] + "\n"})
	r.git(date, "checkout", "-q", "main")
	r.commit("main moves on", map[string]string{"README.md": "# demo\n\nSee ci/notes.md.\n"})
	r.git(date.Add(time.Hour), "merge", "-q", "--no-ff", "-m", "merge feature", "feature")
	r.commits["merge feature"] = r.git(date, "rev-parse", "HEAD")
	// The commit fingerprint hides the GitLab token where it was added; the
	// global one the rotated AWS key's line in every commit and the worktree.
	r.commit("gitleaks ignores", map[string]string{".gitleaksignore": "# reviewed\n" +
		r.commits["ci notes"] + ":ci/notes.md:gitlab-pat:2\n" +
		"config/app.env:aws-access-token:4\n"})
	return r
}

// glFinding is the part of a gitleaks report finding compared: everything
// but Description and Tags (rule wording), Entropy (compared apart) and
// Match and Secret (both "REDACTED": gitleaks ran with --redact).
type glFinding struct {
	RuleID, File, SymlinkFile, Commit, Author, Email, Date, Message, Match, Secret, Fingerprint string
	StartLine, EndLine, StartColumn, EndColumn                                                  int
	Entropy                                                                                     float32
}

func sortGL(fs []glFinding) {
	slices.SortFunc(fs, func(a, b glFinding) int { return cmp.Compare(a.Fingerprint, b.Fingerprint) })
}

// TestScanSameAsGitleaks: in a generated repository, `rekey scan --history`
// without a rekey project reports the findings gitleaks v8.30.1 reports
// (`gitleaks git` for the commits plus `gitleaks dir` for the worktree, its
// default rules, the repository's .gitleaksignore), checked in as
// testdata/scan_gitleaks_expected.json: in gitleaks' report format field for
// field, and in rekey's JSON the same places.
func TestScanSameAsGitleaks(t *testing.T) {
	dir := t.TempDir()
	genGitleaksRepo(t, dir)
	if *gitleaksBin != "" {
		writeGitleaksExpected(t, dir)
	}
	b, err := os.ReadFile(gitleaksExpected)
	if err != nil {
		t.Fatal(err)
	}
	var want []glFinding
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	sortGL(want)
	env := map[string]string{"HOME": t.TempDir()}
	out, errs, code := runIn(t, dir, env, "", "scan", "--history", "--report-format", "gitleaks")
	if code != 1 || !strings.Contains(errs, "pattern rules only") {
		t.Fatalf("scan: exit %d\n%s", code, errs)
	}
	var got []glFinding
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	sortGL(got)
	for i := range got {
		if i < len(want) && got[i].Entropy-want[i].Entropy < 1e-4 && want[i].Entropy-got[i].Entropy < 1e-4 {
			got[i].Entropy = want[i].Entropy
		}
	}
	if d := cmpJSON(want, got); d != "" {
		t.Fatalf("gitleaks format: rekey differs from gitleaks:\n%s", d)
	}
	for _, tk := range glTokens() {
		if strings.Contains(out, tk) {
			t.Fatal("the gitleaks report holds a token")
		}
	}

	// rekey's own JSON: the same places (its ids are gitleaks' fingerprints).
	out, _, code = runIn(t, dir, env, "", "scan", "--history", "--report-format", "json")
	if code != 1 {
		t.Fatalf("scan --report-format json: exit %d", code)
	}
	var mine []map[string]any
	if err := json.Unmarshal([]byte(out), &mine); err != nil {
		t.Fatal(err)
	}
	var places, wantPlaces []string
	str := func(v any) string {
		if v == nil {
			return ""
		}
		return fmt.Sprint(v)
	}
	for _, f := range mine {
		date := ""
		if d, ok := f["author_date"].(string); ok {
			tm, _ := time.Parse(time.RFC3339, d)
			date = tm.UTC().Format(time.RFC3339)
		}
		places = append(places, strings.Join([]string{str(f["id"]), str(f["commit"]), str(f["path"]), str(f["rule"]), str(f["line"]), str(f["end_line"]),
			str(f["author"]), str(f["email"]), date, str(f["message"])}, "|"))
	}
	for _, w := range want {
		wantPlaces = append(wantPlaces, strings.Join([]string{w.Fingerprint, w.Commit, w.File, w.RuleID, fmt.Sprint(w.StartLine), fmt.Sprint(w.EndLine),
			w.Author, w.Email, w.Date, w.Message}, "|"))
	}
	slices.Sort(places)
	slices.Sort(wantPlaces)
	if d := cmpJSON(wantPlaces, places); d != "" {
		t.Fatalf("json format: rekey differs from gitleaks:\n%s", d)
	}
}

func cmpJSON(want, got any) string {
	w, _ := json.MarshalIndent(want, "", " ")
	g, _ := json.MarshalIndent(got, "", " ")
	if string(w) == string(g) {
		return ""
	}
	return fmt.Sprintf("want:\n%s\ngot:\n%s", w, g)
}

// writeGitleaksExpected runs gitleaks (git, then dir) in the repository and
// writes their findings, combined, as the expected list.
func writeGitleaksExpected(t *testing.T, dir string) {
	var all []json.RawMessage
	for _, mode := range []string{"git", "dir"} {
		report := filepath.Join(t.TempDir(), "report.json")
		c := exec.Command(*gitleaksBin, mode, "--redact", "--no-banner", "--exit-code", "0", "--report-format", "json", "--report-path", report, ".")
		c.Dir = dir
		if out, err := c.CombinedOutput(); err != nil {
			t.Fatalf("gitleaks %s: %v\n%s", mode, err, out)
		}
		b, err := os.ReadFile(report)
		if err != nil {
			t.Fatal(err)
		}
		var fs []json.RawMessage
		if err := json.Unmarshal(b, &fs); err != nil {
			t.Fatal(err)
		}
		all = append(all, fs...)
	}
	b, err := json.MarshalIndent(all, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gitleaksExpected, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestScanGitleaksRepos compares rekey with gitleaks on gitleaks' own test
// repositories (its source's testdata/repos, each dotGit renamed .git) with
// gitleaks' default rule file: `rekey scan --history --rules
// config/gitleaks.toml --report-format gitleaks` against `gitleaks git`
// plus `gitleaks dir` (--redact), field for field but Match (rekey writes
// REDACTED whole, gitleaks --redact keeps the text around the secret) and
// Description. The differences it allows are the listed ones. It needs the
// gitleaks binary and source:
//
//	GOBIN=/tmp/gl go install github.com/zricethezav/gitleaks/v8@v8.30.1
//	go test ./cmd/rekey -run TestScanGitleaksRepos -gitleaks /tmp/gl/gitleaks
func TestScanGitleaksRepos(t *testing.T) {
	if *gitleaksBin == "" {
		t.Skip("needs -gitleaks PATH (a gitleaks v8.30.1 binary)")
	}
	modcache, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(strings.TrimSpace(string(modcache)), "github.com/zricethezav/gitleaks/v8@v8.30.1")
	if _, err := os.Stat(filepath.Join(src, "testdata/repos")); err != nil {
		t.Skipf("gitleaks source not in the module cache: %v", err)
	}
	// Findings rekey reports and gitleaks does not: commits only a reflog
	// reaches (an amend, then a reset), and a blob no commit reaches.
	extra := map[string][]string{
		"small": {
			"4f77f1b3cc39d4b17e4cf4ba0a38f5daed9875b4:api/ignore.go:aws-access-token:20",
			"cada78a9bf157ec05573f19e682d211f811c2e2d:api/ignoreCommit.go:aws-access-token:20",
			"cada78a9bf157ec05573f19e682d211f811c2e2d:api/ignoreGlobal.go:aws-access-token:20",
		},
		"staged": {"6583d6db4a57bbeda62d50fc91649036d499418d:aws-access-token:6"},
	}
	for _, name := range []string{"small", "staged", "archives", "nogit", "symlinks"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), name)
			if out, err := exec.Command("cp", "-r", filepath.Join(src, "testdata/repos", name), dir).CombinedOutput(); err != nil {
				t.Fatalf("cp: %v\n%s", err, out)
			}
			_ = exec.Command("chmod", "-R", "u+w", dir).Run()
			hasGit := false
			if _, err := os.Stat(filepath.Join(dir, "dotGit")); err == nil {
				if err := os.Rename(filepath.Join(dir, "dotGit"), filepath.Join(dir, ".git")); err != nil {
					t.Fatal(err)
				}
				hasGit = true
			}
			want := []glFinding{}
			for _, mode := range []string{"git", "dir"} {
				if mode == "git" && !hasGit {
					continue
				}
				report := filepath.Join(t.TempDir(), "r.json")
				c := exec.Command(*gitleaksBin, mode, "--redact", "--no-banner", "--exit-code", "0", "--report-format", "json", "--report-path", report, ".")
				c.Dir = dir
				if out, err := c.CombinedOutput(); err != nil {
					t.Fatalf("gitleaks %s: %v\n%s", mode, err, out)
				}
				b, _ := os.ReadFile(report)
				var fs []glFinding
				if err := json.Unmarshal(b, &fs); err != nil {
					t.Fatal(err)
				}
				want = append(want, fs...)
			}
			args := []string{"scan", "--rules", filepath.Join(src, "config/gitleaks.toml"), "--report-format", "gitleaks"}
			if hasGit {
				args = append(args, "--history")
			}
			out, errs, code := runIn(t, dir, map[string]string{"HOME": t.TempDir()}, "", args...)
			if code > 1 {
				t.Fatalf("rekey scan: exit %d\n%s", code, errs)
			}
			var got []glFinding
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatal(err)
			}
			skip := map[string]bool{}
			for _, fp := range extra[name] {
				skip[fp] = true
			}
			kept := []glFinding{}
			for _, f := range got {
				if !skip[f.Fingerprint] {
					kept = append(kept, f)
				}
			}
			if len(got)-len(kept) != len(extra[name]) {
				t.Fatalf("want the %d listed extra findings, got %d of them", len(extra[name]), len(got)-len(kept))
			}
			got = kept
			for _, fs := range [][]glFinding{want, got} {
				for i := range fs {
					fs[i].Match, fs[i].Entropy = "", float32(int(fs[i].Entropy*1000))/1000
				}
				sortGL(fs)
			}
			if d := cmpJSON(want, got); d != "" {
				t.Fatalf("rekey differs from gitleaks:\n%s", d)
			}
		})
	}
}
