package scan

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/internal/testkit"
)

// repo is a generated git repository with deterministic dates.
type repo struct {
	t    *testing.T
	dir  string
	tick int
}

func newRepo(t *testing.T) *repo {
	testkit.RequireGit(t)
	r := &repo{t: t, dir: t.TempDir()}
	r.git("init", "-q", "-b", "main")
	return r
}

func (r *repo) date() string {
	return time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(r.tick) * time.Hour).Format(time.RFC3339)
}

func (r *repo) git(args ...string) string {
	r.t.Helper()
	r.tick++
	d := r.date()
	cmd := exec.Command("git", append([]string{"-c", "user.name=Dev One", "-c", "user.email=dev@example.test",
		"-c", "commit.gpgsign=false", "-c", "core.hooksPath=/dev/null"}, args...)...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_DATE="+d, "GIT_COMMITTER_DATE="+d,
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out) // test data only
	}
	return strings.TrimSpace(string(out))
}

func (r *repo) write(path, content string) {
	r.t.Helper()
	p := filepath.Join(r.dir, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *repo) commit(msg string, files map[string]string) string {
	r.t.Helper()
	for p, c := range files {
		r.write(p, c)
		r.git("add", p)
	}
	r.git("commit", "-q", "--allow-empty", "-m", msg)
	return r.git("rev-parse", "HEAD")
}

// assertNoValue checks that no field of any finding holds a value or one of
// its encoded forms (or an 8-byte piece of one).
func assertNoValue(t *testing.T, fs []Finding, secrets []Secret) {
	t.Helper()
	for _, f := range fs {
		j, _ := json.Marshal(f)
		texts := []string{fmt.Sprintf("%+v", f), fmt.Sprintf("%#v", f), string(j),
			f.Secret, f.Env, f.Fingerprint, f.Encoding, f.Where, f.Commit, f.Author, f.Blob, f.Path, f.Redacted}
		for _, s := range secrets {
			for _, fm := range forms(s.Value.Reveal()) {
				for i := 0; i+8 <= len(fm.b); i++ {
					piece := string(fm.b[i : i+8])
					for _, txt := range texts {
						if strings.Contains(txt, piece) {
							t.Fatalf("finding for %s leaks part of a %s form of %s", f.Secret, fm.enc, s.Name)
						}
					}
				}
			}
		}
		if len([]rune(strings.Split(f.Redacted, "…")[0])) > 4 {
			t.Fatalf("Redacted shows more than 4 characters")
		}
	}
}

func bySecret(fs []Finding, name string) []Finding {
	var out []Finding
	for _, f := range fs {
		if f.Secret == name {
			out = append(out, f)
		}
	}
	return out
}

func TestScanRepoHistory(t *testing.T) {
	rnd := rand.New(rand.NewPCG(11, 12))
	tok := func() string { return "rk_" + randString(rnd, 29, alnum) }
	secrets := []Secret{
		secret("DELETED", tok()),
		secret("BRANCH", tok()),
		secret("MERGE", tok()),
		secret("STASH", tok()),
		secret("REWRITTEN", tok()),
		secret("B64", tok()),
		secret("DB_PASSWORD", "p@ss/w:rd?"+randString(rnd, 16, alnum)+"#&="),
		secret("UNTOUCHED", tok()),
		secret("STASH_STAGED", tok()),
		secret("STASH_UNTRACKED", tok()),
	}
	secrets[1].Version, secrets[1].Current = 2, false // a retired version
	val := func(i int) string { return secrets[i].Value.RevealString() }
	r := newRepo(t)

	// A file deleted in a later commit.
	cDeleted := r.commit("add config", map[string]string{"config/old.txt": "# settings\nAPI_KEY=" + val(0) + "\n", "README": "hi\n"})
	r.git("rm", "-q", "config/old.txt")
	r.commit("remove config", nil)
	since := r.git("log", "-1", "--format=%aI")

	// An old commit on another branch.
	r.git("checkout", "-q", "-b", "feature")
	cBranch := r.commit("notes", map[string]string{"feature/notes.md": "line1\nline2\ntoken: " + val(1) + "\n"})
	r.commit("more notes", map[string]string{"feature/notes.md": "line1\nline2\ntoken: <redacted>\n"})
	r.git("checkout", "-q", "main")

	// A merge commit's own change: content added only while resolving the merge.
	r.commit("main shared", map[string]string{"shared.txt": "a\nmain\n"})
	r.git("checkout", "-q", "-b", "side", "HEAD~1")
	r.commit("side shared", map[string]string{"side.txt": "side\n"})
	r.git("checkout", "-q", "main")
	r.git("merge", "-q", "--no-ff", "--no-commit", "side")
	r.write("shared.txt", "a\nmain\nresolved with "+val(2)+"\n")
	r.git("add", "shared.txt")
	r.git("commit", "-q", "-m", "merge side")
	cMerge := r.git("rev-parse", "HEAD")

	// An unreachable blob after a history rewrite (amend + reflog expire, no gc).
	r.commit("tmp", map[string]string{"tmp.txt": "x=" + val(4) + "\n"})
	r.write("tmp.txt", "x=removed\n")
	r.git("add", "tmp.txt")
	r.git("commit", "-q", "--amend", "-m", "tmp")
	r.git("reflog", "expire", "--expire=now", "--all")

	// A base64 copy inside a longer base64 blob at a non-zero alignment.
	// 13-byte prefix: the value starts at byte alignment 1 of a base64 group.
	b64 := base64.StdEncoding.EncodeToString(append(append([]byte("-----BEGIN---"), val(5)...), "--trailer-bytes"...))
	cB64 := r.commit("cert", map[string]string{"certs/blob.b64": "header\n" + b64 + "\n"})

	// A URL-encoded copy inside a DATABASE_URL.
	dbURL := (&url.URL{Scheme: "postgres", User: url.UserPassword("app", val(6)), Host: "db:5432", Path: "/app"}).String()
	if strings.Contains(dbURL, val(6)) {
		t.Fatal("test value needs escaping")
	}
	cURL := r.commit("deploy", map[string]string{"deploy/app.yaml": "env:\n  DATABASE_URL: " + dbURL + "\n"})

	// A stash (after the reflog expiry, which would drop it).
	// The first stash entry (older, only in refs/stash's reflog) holds a
	// staged change and an untracked file; the newest an unstaged change.
	r.write("staged.cfg", "K="+val(8)+"\n")
	r.git("add", "staged.cfg")
	r.write("untracked.txt", "\n"+val(9)+"\n")
	r.git("stash", "push", "-q", "--include-untracked")
	stashI, stashU := r.git("rev-parse", "refs/stash^2"), r.git("rev-parse", "refs/stash^3")
	r.write("README", "hi\nSTASHED="+val(3)+"\n")
	r.git("stash", "push", "-q")
	stashW := r.git("rev-parse", "refs/stash")

	m := NewMatcher(secrets)
	fs, err := ScanRepo(context.Background(), r.dir, m, Options{History: true, Staged: true})
	if err != nil {
		t.Fatal(err)
	}
	assertNoValue(t, fs, secrets)

	type want struct {
		secret, where, commit, path, enc string
		line                             int
	}
	wants := []want{
		{"DELETED", WhereCommit, cDeleted, "config/old.txt", EncRaw, 2},
		{"BRANCH", WhereCommit, cBranch, "feature/notes.md", EncRaw, 3},
		{"MERGE", WhereCommit, cMerge, "shared.txt", EncRaw, 3},
		{"STASH", WhereStash, stashW, "README", EncRaw, 2},
		{"STASH_STAGED", WhereStash, stashI, "staged.cfg", EncRaw, 1},
		{"STASH_UNTRACKED", WhereStash, stashU, "untracked.txt", EncRaw, 2},
		{"REWRITTEN", WhereUnreachable, "", "", EncRaw, 1},
		{"B64", WhereCommit, cB64, "certs/blob.b64", EncBase64, 2},
		{"DB_PASSWORD", WhereCommit, cURL, "deploy/app.yaml", EncURL, 2},
	}
	for _, w := range wants {
		var got []Finding
		for _, f := range bySecret(fs, w.secret) {
			if f.Where != WhereWorktree && f.Where != WhereIndex { // the current tree's copies are checked below
				got = append(got, f)
			}
		}
		if len(got) != 1 {
			t.Errorf("%s: %d findings, want 1: %+v", w.secret, len(got), got)
			continue
		}
		f := got[0]
		if f.Where != w.where || f.Commit != w.commit || f.Path != w.path || f.Encoding != w.enc || f.Line != w.line {
			t.Errorf("%s: got where=%s commit=%s path=%s enc=%s line=%d; want %+v", w.secret, f.Where, f.Commit, f.Path, f.Encoding, f.Line, w)
		}
		if f.Blob == "" || f.Env != "prod" || f.Fingerprint != "fp-"+w.secret {
			t.Errorf("%s: blob/env/fingerprint not set: %+v", w.secret, f)
		}
		if w.commit != "" && (f.Author != "Dev One" || f.Email != "dev@example.test" || f.AuthorDate.IsZero()) {
			t.Errorf("%s: author = %q %v", w.secret, f.Author, f.AuthorDate)
		}
	}
	if got := bySecret(fs, "BRANCH"); len(got) == 1 && (got[0].Version != 2 || got[0].Current) {
		t.Errorf("BRANCH: version fields %+v", got[0])
	}
	if got := bySecret(fs, "UNTOUCHED"); len(got) != 0 {
		t.Errorf("UNTOUCHED: %d findings", len(got))
	}

	// Since excludes older commits but still reports unreachable blobs.
	fs, err = ScanRepo(context.Background(), r.dir, m, Options{History: true, Since: since})
	if err != nil {
		t.Fatal(err)
	}
	if got := bySecret(fs, "DELETED"); len(got) != 0 {
		t.Errorf("Since: DELETED still reported: %+v", got)
	}
	if got := bySecret(fs, "REWRITTEN"); len(got) != 1 {
		t.Errorf("Since: REWRITTEN: %+v", got)
	}
	if got := bySecret(fs, "MERGE"); len(got) != 2 || got[1].Commit != cMerge {
		t.Errorf("Since: MERGE (worktree + merge commit): %+v", got)
	}

	// Without History, nothing of the history is reported.
	fs, err = ScanRepo(context.Background(), r.dir, m, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Only the leaks still in the checked-out tree remain.
	var names []string
	for _, f := range fs {
		if f.Where != WhereWorktree {
			t.Errorf("worktree-only scan reported %s", f.Where)
		}
		names = append(names, f.Secret)
	}
	if strings.Join(names, ",") != "B64,DB_PASSWORD,MERGE" {
		t.Errorf("worktree-only scan: %v", names)
	}
}

func TestScanRepoWorktreeAndIndex(t *testing.T) {
	rnd := rand.New(rand.NewPCG(13, 14))
	secrets := []Secret{secret("ENVFILE", "rk_"+randString(rnd, 29, alnum)), secret("STAGED", "rk_"+randString(rnd, 29, alnum))}
	r := newRepo(t)
	r.commit("init", map[string]string{".gitignore": ".env\n"})
	r.write(".env", "ENVFILE="+secrets[0].Value.RevealString()+"\n")
	r.write("notes/leak.txt", "x\ny\ncopy: "+secrets[0].Value.RevealString()+"\n")
	r.write("staged.txt", "S="+secrets[1].Value.RevealString()+"\n")
	r.git("add", "staged.txt")
	r.write("staged.txt", "S=gone\n") // only the index has it now

	ignore := func(p string) bool { return p == ".env" }
	m := NewMatcher(secrets)
	fs, err := ScanRepo(context.Background(), r.dir, m, Options{Staged: true, History: true, Ignore: ignore})
	if err != nil {
		t.Fatal(err)
	}
	assertNoValue(t, fs, secrets)
	env := bySecret(fs, "ENVFILE")
	if len(env) != 1 || env[0].Where != WhereWorktree || env[0].Path != "notes/leak.txt" || env[0].Line != 3 || env[0].Column != 7 {
		t.Errorf("ENVFILE findings: %+v", env)
	}
	st := bySecret(fs, "STAGED")
	if len(st) != 1 || st[0].Where != WhereIndex || st[0].Path != "staged.txt" || st[0].Blob == "" {
		t.Errorf("STAGED findings (index-only blob must not be 'unreachable'): %+v", st)
	}

	// ScanDir alone, from a subdirectory path, without ignore.
	fs, err = ScanDir(context.Background(), r.dir, m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(bySecret(fs, "ENVFILE")) != 2 {
		t.Errorf("ScanDir without ignore: %+v", fs)
	}
}

func TestScanRepoCleanControl(t *testing.T) {
	rnd := rand.New(rand.NewPCG(15, 16))
	secrets := randomSecrets(rnd, 20)
	r := newRepo(t)
	// Same shapes and encodings as the leaks above, of other random values.
	for i := 0; i < 10; i++ {
		other := "rk_" + randString(rnd, 29, alnum)
		r.commit(fmt.Sprintf("c%d", i), map[string]string{
			"config.env":  "API_KEY=" + other + "\n",
			"blob.b64":    base64.StdEncoding.EncodeToString([]byte("---" + other + "---")),
			"deploy.yaml": "DATABASE_URL: postgres://app:" + url.QueryEscape("p@ss/"+other) + "@db/app\n",
		})
	}
	r.write("README", "API_KEY=rk_"+randString(rnd, 29, alnum)+"\n")
	r.git("stash", "push", "-q", "--include-untracked")
	fs, err := ScanRepo(context.Background(), r.dir, NewMatcher(secrets), Options{History: true, Staged: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 0 {
		t.Fatalf("clean repository: %d findings: %+v", len(fs), fs)
	}
}

func TestParseRaw(t *testing.T) {
	z := strings.Repeat("0", 40)
	a, b, c := strings.Repeat("a", 40), strings.Repeat("b", 40), strings.Repeat("c", 40)
	cases := []struct {
		line, blob, path string
		ok               bool
	}{
		{":000000 100644 " + z + " " + a + " A\tdir/f.txt", a, "dir/f.txt", true},
		{":100644 000000 " + a + " " + z + " D\tf", "", "", false},
		{"::100644 100644 100644 " + a + " " + b + " " + c + " MM\tm.txt", c, "m.txt", true},
		{":::100644 100644 000000 100644 " + a + " " + a + " " + z + " " + b + " MMA\tx", b, "x", true},
		{":000000 160000 " + z + " " + a + " A\tsub", "", "", false},
		{":000000 100644 " + z + " " + a + " A\t\"tab\\there \\303\\251\"", a, "tab\there é", true},
		{":100644 100644 " + a + " " + b + " R087\told.txt\tnew.txt", b, "new.txt", true},
	}
	for _, c := range cases {
		blob, path, from, ok := parseRaw(c.line)
		if blob != c.blob || path != c.path || ok != c.ok {
			t.Errorf("parseRaw(%q) = %q %q %v", c.line, blob, path, ok)
		}
		if ok && len(from) != strings.Count(c.line[:strings.IndexByte(c.line, ' ')], ":") {
			t.Errorf("parseRaw(%q): parents %q", c.line, from)
		}
	}
}

// A repository without commits: a blob staged then unstaged is unreachable.
func TestScanRepoNoCommits(t *testing.T) {
	s := []Secret{secret("K", "rk_nocommits_0123456789abcdef")}
	r := newRepo(t)
	r.write("f.txt", "v="+s[0].Value.RevealString()+"\n")
	r.git("add", "f.txt")
	r.git("rm", "-q", "--cached", "f.txt")
	if err := os.Remove(filepath.Join(r.dir, "f.txt")); err != nil {
		t.Fatal(err)
	}
	fs, err := ScanRepo(context.Background(), r.dir, NewMatcher(s), Options{History: true, Staged: true})
	if err != nil {
		t.Fatal(err)
	}
	assertNoValue(t, fs, s)
	if len(fs) != 1 || fs[0].Where != WhereUnreachable || fs[0].Blob == "" || fs[0].Path != "" || fs[0].Commit != "" {
		t.Fatalf("findings: %+v", fs)
	}
}
