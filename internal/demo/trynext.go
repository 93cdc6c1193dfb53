package demo

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ModulePath is rekey's module: `go install ModulePath/cmd/rekey@latest`.
const ModulePath = "github.com/rekeyhq/rekey"

// howToRekey returns the lines "Try next" starts with so that the `rekey`
// of the lines after them works in the user's shell once the demo has
// exited: none when self is the rekey on PATH; an alias to self when it is
// elsewhere; and when self is a `go run` build (which go removes when rekey
// exits), the go install that puts a rekey on PATH: from root, the source
// tree it was built from, else the module's latest release.
func howToRekey(self, onPath, root string) []string {
	switch {
	case goRunBuild(self):
		install := "go install " + ModulePath + "/cmd/rekey@latest"
		if root != "" {
			install = "go install -C " + shellQuote(root) + " ./cmd/rekey"
		}
		return []string{
			install + "   # this demo ran under `go run`, whose binary is gone once it exits",
			`export PATH="$(go env GOPATH)/bin:$PATH"   # where go install puts rekey (unless GOBIN is set)`,
		}
	case self == "" || sameFile(self, onPath):
		return nil
	default:
		return []string{"alias rekey=" + shellQuote(self)}
	}
}

// goRunBuild reports whether exe is a binary `go run` built: …/go-build*/…/exe/NAME
// under the temporary folder (os.TempDir, or GOTMPDIR), removed when go
// run exits.
func goRunBuild(exe string) bool {
	if exe == "" || filepath.Base(filepath.Dir(exe)) != "exe" {
		return false
	}
	for d := filepath.Dir(exe); d != filepath.Dir(d); d = filepath.Dir(d) {
		if strings.HasPrefix(filepath.Base(d), "go-build") {
			return true
		}
	}
	return false
}

// selfAndPath are this executable and the rekey on PATH ("" when unknown
// or none).
func selfAndPath() (self, onPath string) {
	self, _ = os.Executable()
	if p, err := exec.LookPath("rekey"); err == nil {
		onPath, _ = filepath.Abs(p)
	}
	return self, onPath
}

func sameFile(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '-' || r == '_' || r == '+' || r == ',' || r == ':' || r == '@' ||
			r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// tryNextHeader is the start of "Try next": the lines that make `rekey`
// work after the demo, then cd into the project and the demo's XDG folders.
func (s *session) tryNextHeader() string {
	self, onPath := selfAndPath()
	var b strings.Builder
	for _, l := range howToRekey(self, onPath, SourceRoot()) {
		fmt.Fprintf(&b, "  %s\n", l)
	}
	fmt.Fprintf(&b, "  cd %s\n", shellQuote(s.proj))
	fmt.Fprintf(&b, "  export XDG_CONFIG_HOME=%s   # where the demo's master key file is\n", shellQuote(s.config()))
	fmt.Fprintf(&b, "  export XDG_STATE_HOME=%s    # where its rekey.yaml approval and audit anchor are\n", shellQuote(s.state()))
	return b.String()
}
