package rekey

import (
	"slices"
	"strings"
	"time"
)

// This file holds what rekey.yaml's services: section declares: the
// processes that read the secrets, and how rekey restarts them (the
// services adapter runs the commands; config decodes them).

// Defaults of services.
const (
	DefaultServiceTimeout = 60 * time.Second // start, stop, restart
	DefaultStatusTimeout  = 10 * time.Second
)

// Command is a command rekey runs: an argv list run as is, or a shell
// command (text) run with `sh -c`. It runs in the project folder (the
// folder of rekey.yaml) with rekey's environment, and never holds a secret
// value: rekey.yaml holds none, and templates are refused there.
type Command struct {
	Argv    []string // one of Argv and Shell
	Shell   string
	Timeout time.Duration
}

// IsZero reports whether no command is set.
func (c Command) IsZero() bool { return len(c.Argv) == 0 && c.Shell == "" }

// Args returns the argv to execute: Argv, or sh -c Shell.
func (c Command) Args() []string {
	if len(c.Argv) > 0 {
		return slices.Clone(c.Argv)
	}
	if c.Shell != "" {
		return []string{"sh", "-c", c.Shell}
	}
	return nil
}

// String describes the command for messages: the argv joined by spaces, or
// the shell text, shortened to 80 characters.
func (c Command) String() string {
	s := c.Shell
	if len(c.Argv) > 0 {
		s = strings.Join(c.Argv, " ")
	}
	if len(s) > 80 {
		s = s[:77] + "..."
	}
	return s
}

// Service is a process that reads secrets: rekey restarts it after
// publishing a new value of something it consumes.
type Service struct {
	Name string
	// Restart restarts the service. When it is not set, Stop then Start do.
	Restart, Start, Stop Command
	// Status exits 0 when the service is running (optional).
	Status Command
	// Consumes lists the secrets and derived values the service reads.
	Consumes []string
	// ConsumesAll: the service reads every secret (consumes: all).
	ConsumesAll bool
	// Order: lower restarts first; ties in file order.
	Order int
	// Environments the service runs in; empty means every environment.
	Environments []string
	Line         int
}

// In reports whether the service belongs to environment env.
func (s Service) In(env string) bool { return inEnvs(s.Environments, env) }

// inEnvs reports whether env is in envs, an empty list meaning every
// environment.
func inEnvs(envs []string, env string) bool {
	return len(envs) == 0 || slices.Contains(envs, env)
}
