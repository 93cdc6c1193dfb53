package testkit

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// RequireGit skips without git, unless REKEY_TEST_DISALLOW_SKIP=1.
func RequireGit(tb testing.TB) {
	tb.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		SkipOrFail(tb, "git is not installed: %v", err)
	}
}

// GitEnv is this process's environment with git isolated from the
// machine's configuration (HOME is home) and a fixed author.
func GitEnv(home string) []string {
	return append(os.Environ(),
		"HOME="+home, "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@example.com",
		"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@example.com",
	)
}

// Git runs git in dir with GitEnv(home), branch main and no signing, and
// returns its output, or fails the test.
func Git(tb testing.TB, dir, home string, args ...string) string {
	tb.Helper()
	c := exec.Command("git", append([]string{"-C", dir, "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false"}, args...)...)
	c.Env = GitEnv(home)
	out, err := c.CombinedOutput()
	if err != nil {
		tb.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// GitInit makes dir a git repository (branch main) and returns the HOME
// to run Git in it with; it skips without git (RequireGit).
func GitInit(tb testing.TB, dir string) (home string) {
	tb.Helper()
	RequireGit(tb)
	home = tb.TempDir()
	Git(tb, dir, home, "init", "-q")
	return home
}
