package demo

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/rekeyhq/rekey"
)

// AppName is the reference app's binary (examples/atlas-app).
const AppName = "atlas-app"

// FindApp returns the reference app's binary for the PostgreSQL demo:
// o.App when set; else atlas-app beside the rekey executable (a package
// that installs both); else, when rekey was built from a source tree that
// is still here and go is on PATH, atlas-app built from it with go build
// into the user's cache folder (or dir/bin), said on stderr (on every run:
// Go's build cache makes it quick, and the app never lags its source);
// else atlas-app on PATH. None: an error whose hint names the command that
// builds it.
func FindApp(ctx context.Context, o Options, dir string) (string, error) {
	if o.App != "" {
		if !isExecutable(o.App) {
			return "", rekey.Errorf(rekey.CodeNotFound, "--app %s: no executable file there", o.App)
		}
		return o.App, nil
	}
	if exe, err := os.Executable(); err == nil {
		if p := filepath.Join(filepath.Dir(exe), AppName); isExecutable(p) {
			return p, nil
		}
	}
	if root := SourceRoot(); root != "" {
		if _, err := exec.LookPath("go"); err == nil {
			out := filepath.Join(cacheDir(root, dir), AppName)
			fmt.Fprintf(o.Stderr, "rekey demo: building the reference app (not part of the rekey binary): go build -o %s ./examples/atlas-app in %s\n", out, root)
			return out, BuildApp(ctx, root, out, o.Environ)
		}
	}
	if p, err := exec.LookPath(AppName); err == nil {
		return p, nil
	}
	return "", rekey.Errorf(rekey.CodeNotFound, "the PostgreSQL demo needs the reference app (examples/atlas-app), which is not part of the rekey binary").
		WithHint("in a clone of rekey: go build -o atlas-app ./examples/atlas-app && rekey demo --with-postgres --app ./atlas-app (or go install github.com/rekeyhq/rekey/examples/atlas-app@latest, which puts it on PATH)")
}

// BuildApp builds the reference app of the source tree root into out
// (go build -o OUT ./examples/atlas-app, with environ; nil: the
// process's).
func BuildApp(ctx context.Context, root, out string, environ []string) error {
	if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "./examples/atlas-app")
	cmd.Dir, cmd.Env = root, rekey.ChildEnv(environOr(environ))
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	if err := cmd.Run(); err != nil {
		return rekey.Errorf(rekey.CodeInternal, "go build -o %s ./examples/atlas-app: %v: %s", out, err, strings.TrimSpace(b.String()))
	}
	return nil
}

// SourceRoot is the rekey source tree this binary was built from, when it
// is still where it was built (a clone run with go run, or built with go
// build without -trimpath): the folder of go.mod, holding examples/atlas-app.
// Else "".
func SourceRoot() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		return ""
	}
	root := filepath.Dir(filepath.Dir(filepath.Dir(file))) // internal/demo/app.go
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !bytes.HasPrefix(mod, []byte("module github.com/rekeyhq/rekey\n")) {
		return ""
	}
	if _, err := os.Stat(filepath.Join(root, "examples", "atlas-app", "main.go")); err != nil {
		return ""
	}
	return root
}

// cacheDir is where the app built from root goes: the user's cache folder
// (one folder a source tree), else dir/bin.
func cacheDir(root, dir string) string {
	c, err := os.UserCacheDir()
	if err != nil {
		return filepath.Join(dir, "bin")
	}
	sum := sha256.Sum256([]byte(root))
	return filepath.Join(c, "rekey", "demo-app-"+hex.EncodeToString(sum[:6]))
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

func environOr(environ []string) []string {
	if environ == nil {
		return os.Environ()
	}
	return environ
}
