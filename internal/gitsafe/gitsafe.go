// Package gitsafe runs git on repositories rekey does not control.
//
// A repository's own configuration (.git/config) can make read-only git
// commands run programs: log.showSignature with gpg.program, core.fsmonitor,
// a pager, an external diff. `rekey scan` and `rekey doctor` read
// repositories someone else may have prepared, so every git they start goes
// through [Command]: those settings are overridden on the command line
// (which wins over every configuration file), replacement objects are
// ignored (they could hide a blob from the scan), and the environment holds
// none of rekey's key material.
package gitsafe

import (
	"context"
	"os"
	"os/exec"
	"strings"

	"github.com/rekeyhq/rekey"
)

// overrides switch off every setting that makes the git commands rekey runs
// (rev-parse, ls-files, check-ignore, log, rev-list, cat-file) start a program.
// Hooks are left alone: none of these commands runs one, and
// `rev-parse --git-path hooks` must say where the repository's hooks are
// (scan --install-hook).
var overrides = []string{
	"-c", "log.showSignature=false",
	"-c", "gpg.program=false",
	"-c", "gpg.ssh.program=false",
	"-c", "gpg.x509.program=false",
	"-c", "core.fsmonitor=false",
	"-c", "core.pager=cat",
	"-c", "core.sshCommand=false",
	"-c", "core.askPass=false",
	"-c", "credential.helper=",
	"-c", "diff.external=false",
	"-c", "protocol.allow=never",
}

// Env is environ prepared for git: without rekey's key material and the
// variables that would make git start a program or prompt, plus the ones
// that keep it non-interactive and exact.
func Env(environ []string) []string {
	out := make([]string, 0, len(environ)+6)
	for _, kv := range rekey.ChildEnv(environ) {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "GIT_EXTERNAL_DIFF", "GIT_PAGER", "PAGER", "GIT_ASKPASS", "SSH_ASKPASS", "GIT_SSH", "GIT_SSH_COMMAND", "GIT_EDITOR", "GIT_CONFIG_PARAMETERS", "GIT_CONFIG_COUNT":
			continue
		}
		out = append(out, kv)
	}
	return append(out, "GIT_TERMINAL_PROMPT=0", "GIT_PAGER=cat", "GIT_NO_REPLACE_OBJECTS=1", "GIT_OPTIONAL_LOCKS=0", "LC_ALL=C")
}

// Command is `git -C dir <overrides> args...` with [Env] of the process's
// environment.
func Command(ctx context.Context, dir string, args ...string) *exec.Cmd {
	return CommandEnv(ctx, os.Environ(), dir, args...)
}

// CommandEnv is [Command] with the given environment (before [Env]).
func CommandEnv(ctx context.Context, environ []string, dir string, args ...string) *exec.Cmd {
	full := append(append([]string{"-C", dir}, overrides...), args...)
	cmd := exec.CommandContext(ctx, "git", full...)
	cmd.Env = Env(environ)
	return cmd
}
