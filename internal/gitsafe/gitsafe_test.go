package gitsafe_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey/internal/gitsafe"
)

func TestEnv(t *testing.T) {
	env := gitsafe.Env([]string{"PATH=/bin", "REKEY_MASTER_KEY=k", "REKEY_NEW_PASSPHRASE=p", "GIT_EXTERNAL_DIFF=/evil", "GIT_SSH_COMMAND=/evil", "PAGER=/evil", "GIT_INDEX_FILE=/idx"})
	for _, kv := range env {
		if strings.Contains(kv, "REKEY_MASTER_KEY") || strings.Contains(kv, "REKEY_NEW_") || strings.Contains(kv, "/evil") {
			t.Errorf("Env kept %q", kv)
		}
	}
	for _, want := range []string{"PATH=/bin", "GIT_INDEX_FILE=/idx", "GIT_NO_REPLACE_OBJECTS=1", "GIT_TERMINAL_PROMPT=0"} {
		if !slices.Contains(env, want) {
			t.Errorf("Env lacks %q: %q", want, env)
		}
	}
}

func TestCommandOverridesComeFirst(t *testing.T) {
	cmd := gitsafe.Command(context.Background(), "/repo", "log", "--all")
	args := strings.Join(cmd.Args, " ")
	if !strings.HasPrefix(args, "git -C /repo -c ") || !strings.HasSuffix(args, " log --all") || !strings.Contains(args, "log.showSignature=false") || !strings.Contains(args, "core.fsmonitor=false") {
		t.Fatalf("args %q", args)
	}
}
