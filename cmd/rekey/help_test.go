package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestEveryCommandHasExamples: every command a user can run shows an
// Examples: section in its help, and each example line runs rekey.
func TestEveryCommandHasExamples(t *testing.T) {
	a := &app{m: &Main{}}
	root := a.rootCommand()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		if c.Hidden || !c.Runnable() || !c.HasParent() || c.Name() == "help" || c.Parent().Name() == "completion" || c.Name() == "completion" {
			return
		}
		if strings.TrimSpace(c.Example) == "" {
			t.Errorf("%s has no Example", c.CommandPath())
			return
		}
		for _, l := range strings.Split(c.Example, "\n") {
			if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "rekey ") && !strings.HasPrefix(l, "#") {
				t.Errorf("%s: example line %q does not run rekey", c.CommandPath(), l)
			}
		}
	}
	walk(root)
}
