package main

import (
	"errors"
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

func (a *app) versionCommand() *cobra.Command {
	c := &cobra.Command{
		Use:     "version [--json]",
		Short:   "Print rekey's version: module version, VCS revision and Go version (from the build)",
		Example: "  rekey version\n  rekey --version\n  rekey version --json",
		Long: `version prints "rekey VERSION (REVISION, TIME) GO": the module version
(` + "`go install …@vX`" + `; "(devel)" for a build from a checkout), the VCS revision
and its time, and the Go version, from the build information. --json prints
{version, revision, time, modified, go_version}.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if a.jsonOut {
				return a.printJSON(versionView())
			}
			fmt.Fprintln(a.out(), versionLine())
			return nil
		},
	}
	c.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	return c
}

// versionLine is "rekey VERSION (REVISION[, modified], BUILT) GO", read from
// the build information the Go toolchain embeds: the module version for
// `go install …@vX`, "(devel)" for a build from a checkout, whose VCS
// revision and time are then the commit's.
func versionLine() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "rekey (unknown version: built without module information)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, when, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = ", modified"
			}
		}
	}
	var extra []string
	if rev != "" {
		extra = append(extra, rev[:min(12, len(rev))]+dirty)
	}
	if when != "" {
		extra = append(extra, when)
	}
	out := "rekey " + v
	if len(extra) > 0 {
		out += " (" + strings.Join(extra, ", ") + ")"
	}
	return out + " " + bi.GoVersion
}

// helpCommand is `rekey help [COMMAND...]`: the command's help, or a usage
// error (exit 2) naming a topic that is no command, with suggestions.
func helpCommand(root *cobra.Command) *cobra.Command {
	return &cobra.Command{
		Use:     "help [COMMAND...]",
		Short:   "Help about any command",
		Example: "  rekey help rotate\n  rekey help audit anchor",
		RunE: func(c *cobra.Command, args []string) error {
			cmd, rest, err := root.Find(args)
			if err != nil || len(rest) > 0 || cmd == nil {
				topic := strings.Join(args, " ")
				msg := fmt.Sprintf("unknown help topic %q", topic)
				if len(args) > 0 {
					if s := root.SuggestionsFor(args[0]); len(s) > 0 {
						msg += "\n\nDid you mean this?\n\t" + strings.Join(s, "\n\t")
					}
				}
				return &usageError{err: errors.New(msg)}
			}
			return cmd.Help()
		},
	}
}
