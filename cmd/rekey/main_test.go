package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/rekeyhq/rekey/internal/testkit"
	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets testscript run `rekey` in-process as a command of the scripts.
func TestMain(m *testing.M) {
	// Audit anchors of the tests' stores (in-process and the built binary
	// alike) go to one folder of their own, not the user's state directory.
	os.Setenv("XDG_STATE_HOME", filepath.Join(os.TempDir(), "rekey-test-state"))
	testscript.Main(templatesM{m}, map[string]func(){
		"rekey": func() { os.Exit(runProcess(os.Args[1:])) },
	})
}

// templatesM runs the tests (not a `rekey` subprocess) with one initdb per
// PostgreSQL version, copied for each cluster: the tests start one each.
type templatesM struct{ m *testing.M }

func (t templatesM) Run() int {
	remove := testkit.UseClusterTemplates()
	defer remove()
	return t.m.Run()
}

// testMasterKey is a fixed master key for scripts (base64 of 32 bytes).
const testMasterKey = "q8Xk2tVzvY3kQeY9yqFv0d0Q4cX2mYpZ1rV5bQ7wE8s="

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("REKEY_MASTER_KEY", testMasterKey)
			env.Setenv("HOME", env.WorkDir+"/home")
			env.Setenv("XDG_CONFIG_HOME", env.WorkDir+"/home/.config")
			env.Setenv("REKEY_ACTOR", "tester")
			return nil
		},
		RequireExplicitExec: true,
	})
}
