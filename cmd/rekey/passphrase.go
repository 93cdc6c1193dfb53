package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/seal"
	"golang.org/x/term"
)

// Passphrases. One policy (seal.CheckPassphrase: 12 characters, 5 of them
// distinct) applies wherever a passphrase is SET — init --passphrase and
// master rotate --passphrase — whatever it comes from: REKEY_PASSPHRASE,
// REKEY_NEW_PASSPHRASE or the terminal.
//
// A passphrase that OPENS an existing store is not refused by the policy:
// stores created before the policy applied to the environment may have a
// shorter one, and refusing it would lock their owners out of their secrets
// (even out of `master rotate`, which needs the store open). A weak one gets
// a warning instead; a wrong one is refused by the store (exit 6) as before.

// passphraseHint is the hint of a refused passphrase.
var passphraseHint = fmt.Sprintf("choose at least %d characters, not a repetition: four or five random words are easy to type and hard to guess", seal.MinPassphraseLen)

// passphrase reads the passphrase that opens the store: REKEY_PASSPHRASE, or
// the terminal. confirm asks twice.
func (a *app) passphrase(prompt string, confirm bool) ([]byte, error) {
	if v := a.getenv("REKEY_PASSPHRASE"); v != "" {
		p := []byte(v)
		a.warnWeakPassphrase("REKEY_PASSPHRASE", p)
		return p, nil
	}
	p, err := a.readTerminalPassphrase(prompt, confirm, "REKEY_PASSPHRASE")
	if err != nil {
		return nil, err
	}
	a.warnWeakPassphrase("the passphrase", p)
	return p, nil
}

// warnWeakPassphrase warns when the passphrase of an existing store does not
// meet the policy of new ones.
func (a *app) warnWeakPassphrase(what string, p []byte) {
	if err := seal.CheckPassphrase(p); err != nil {
		why := strings.TrimPrefix(err.Error(), seal.ErrWeakPassphrase.Error()+": ")
		a.warnf("%s is weaker than rekey now allows (%s): once it opens the store, set a stronger one with `rekey master rotate --passphrase`", what, why)
	}
}

// newPassphrase reads a passphrase to set: from the environment variable
// envVar, else the terminal (twice). It is refused, with exit 2, unless it
// meets the policy; the error names its source, never its text.
func (a *app) newPassphrase(envVar, prompt string) ([]byte, error) {
	var p []byte
	src := envVar
	if v := a.getenv(envVar); v != "" {
		p = []byte(v)
	} else {
		var err error
		if p, err = a.readTerminalPassphrase(prompt, true, envVar); err != nil {
			return nil, err
		}
		src = "the passphrase typed"
	}
	if err := seal.CheckPassphrase(p); err != nil {
		seal.Wipe(p)
		return nil, rekey.Wrap(rekey.CodeInvalid, err, "%s", src).WithHint("%s", passphraseHint)
	}
	return p, nil
}

// readTerminalPassphrase prompts on the terminal; without one it is an error
// naming envVar, the variable to set instead.
func (a *app) readTerminalPassphrase(prompt string, confirm bool, envVar string) ([]byte, error) {
	f, ok := a.m.Stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		if envVar == "REKEY_PASSPHRASE" {
			return nil, rekey.Errorf(rekey.CodeAuth, "a passphrase is needed and stdin is not a terminal").WithHint("set REKEY_PASSPHRASE")
		}
		return nil, rekey.Errorf(rekey.CodeAuth, "a new passphrase is needed: %s is not set and stdin is not a terminal", envVar).
			WithHint("set %s to the new passphrase (at least %d characters)", envVar, seal.MinPassphraseLen)
	}
	fmt.Fprint(a.m.Stderr, prompt)
	p, err := term.ReadPassword(int(f.Fd()))
	fmt.Fprintln(a.m.Stderr)
	if err != nil {
		return nil, err
	}
	if confirm {
		fmt.Fprint(a.m.Stderr, "Again: ")
		p2, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(a.m.Stderr)
		if err != nil {
			return nil, err
		}
		same := string(p) == string(p2)
		seal.Wipe(p2)
		if !same {
			seal.Wipe(p)
			return nil, rekey.Errorf(rekey.CodeInvalid, "the passphrases differ").WithHint("type the same passphrase twice")
		}
	}
	return p, nil
}
