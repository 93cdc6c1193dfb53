// Package doctor checks a project against the Best Practices of the
// rotation runbook (`rekey doctor`): one file per check, each returning a
// [Check] that says PASS, WARN or FAIL, with a fix for each that does not
// pass. Values are compared in-process only; no Check holds one, and none
// is handed to git.
package doctor

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/envfile"
)

// The statuses of a check.
const (
	Pass = "PASS"
	Warn = "WARN"
	Fail = "FAIL"
)

// Check is one line of `rekey doctor`. Detail and Fix never hold a value.
type Check struct {
	Check  string `json:"check"`
	Status string `json:"status"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Inputs is what the checks read, filled by the command.
type Inputs struct {
	Config *config.Config
	Store  rekey.Store
	// Environment resolves the environment the command was given
	// (--environment, REKEY_ENVIRONMENT, the only one): log-level reads it
	// when there is no "production".
	Environment func(*config.Config) (*config.Environment, error)
	// Status computes the status rows of one environment (strength, schedule).
	Status func(ctx context.Context, env string) ([]rekey.SecretStatus, error)
	// EachVersion calls fn with every stored version of every secret and
	// its unsealed value.
	EachVersion func(ctx context.Context, st rekey.Store, fn func(rekey.Version, rekey.Value)) error
	// Now is the clock of the tls check.
	Now func() time.Time
	// Environ is the environment of the git children (before rekey's keys
	// and the managed names are removed).
	Environ []string
	// StateDir is where the approvals of rekey.yaml live (internal/approval).
	StateDir string
	// Placeholder is what `rekey example` writes in place of a secret: a
	// .env.example value equal to it is not a credential.
	Placeholder string
}

// run holds what the checks share.
type run struct {
	Inputs
	ctx     context.Context
	cfg     *config.Config
	st      rekey.Store
	git     *gitRepo // nil when not a git repository
	gitWhy  string   // why git is nil
	targets []config.Target
}

// Run runs every check, in the order `rekey doctor --help` lists them. An
// error is one that stops doctor itself (the store cannot be read); a
// check that cannot run is a WARN.
func Run(ctx context.Context, in Inputs) ([]Check, error) {
	d := &run{Inputs: in, ctx: ctx, cfg: in.Config, st: in.Store}
	d.git, d.gitWhy = findGit(d.cfg.Dir, gitEnv(d.cfg, in.Environ))
	seen := map[string]bool{}
	for _, e := range d.cfg.Environments {
		for _, t := range e.Targets {
			if t.Type == config.TargetDotenv && !seen[t.Path] {
				seen[t.Path] = true
				d.targets = append(d.targets, t)
			}
		}
	}

	// The values of every version are unsealed once, for the checks that
	// compare them with files, and wiped at the end.
	vals, err := d.loadValues()
	defer func() {
		for _, v := range vals {
			v.wipe()
		}
	}()
	if err != nil {
		return nil, err
	}

	checks := []Check{
		d.checkEnvIgnored(),
		d.checkEnvNeverCommitted(),
		d.checkExample(vals),
		d.checkFileModes(),
		d.checkEnvDistinct(),
	}
	strength, schedule, err := d.checkStatus()
	if err != nil {
		return nil, err
	}
	return append(checks, strength, schedule, d.checkLogLevel(), d.checkTrackedValues(vals), d.checkAuditChain(), d.checkMasterKeyOutside(), d.checkTLS(), d.checkConfigApproved()), nil
}

// Summary counts the checks by status: "12 passed, 1 warnings, 0 failed".
func Summary(checks []Check) string {
	n := map[string]int{}
	for _, c := range checks {
		n[c.Status]++
	}
	return fmt.Sprintf("%d passed, %d warnings, %d failed", n[Pass], n[Warn], n[Fail])
}

// Failed reports whether a check failed (doctor then exits 1).
func Failed(checks []Check) bool {
	for _, c := range checks {
		if c.Status == Fail {
			return true
		}
	}
	return false
}

func pass(check, detail string) Check {
	return Check{Check: check, Status: Pass, Detail: detail}
}

func warn(check, detail, fix string) Check {
	return Check{Check: check, Status: Warn, Detail: detail, Fix: fix}
}

func fail(check, detail, fix string) Check {
	return Check{Check: check, Status: Fail, Detail: detail, Fix: fix}
}

// rel is p relative to the project folder when it is inside it.
func (d *run) rel(p string) string { return envfile.RelTo(d.cfg.Dir, p) }

// noGit is the WARN of a git check that cannot run.
func (d *run) noGit(check string) Check {
	return warn(check, "skipped: "+d.gitWhy, "run rekey doctor inside the project's git repository")
}

// storedValue is one unsealed version. Its value is never printed.
type storedValue struct {
	env, name string
	n         int
	value     rekey.Value
	needles   [][]byte // the value, and its percent-encoded forms when they differ
}

// wipe zeroes the value and its encoded forms.
func (v storedValue) wipe() {
	v.value.Wipe()
	for _, n := range v.needles {
		clear(n)
	}
}

// in reports whether data holds the value as is or percent-encoded (as a
// derived URL embeds it).
func (v storedValue) in(data []byte) bool {
	for _, n := range v.needles {
		if len(n) > 0 && bytes.Contains(data, n) {
			return true
		}
	}
	return false
}

func (v storedValue) label() string { return fmt.Sprintf("%s v%d (%s)", v.name, v.n, v.env) }

func (d *run) loadValues() ([]storedValue, error) {
	var out []storedValue
	err := d.EachVersion(d.ctx, d.st, func(v rekey.Version, val rekey.Value) {
		sv := storedValue{env: v.Env, name: v.Name, n: v.N, value: val, needles: [][]byte{val.Reveal()}}
		for _, q := range []string{url.QueryEscape(val.RevealString()), url.PathEscape(val.RevealString())} {
			if q != val.RevealString() {
				sv.needles = append(sv.needles, []byte(q))
			}
		}
		out = append(out, sv)
	})
	return out, err
}
