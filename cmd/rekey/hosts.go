package main

import (
	"fmt"

	"github.com/rekeyhq/rekey"
	rkapp "github.com/rekeyhq/rekey/internal/app"
	"github.com/spf13/cobra"
)

func (a *app) hostsCommand() *cobra.Command {
	c := &cobra.Command{
		Use:   "hosts",
		Short: "The .env files on other machines (type: ssh targets): reachable, host key, versions held",
		Long: `hosts works with the targets of type ssh in rekey.yaml: .env files on other
machines, reached with the system ssh client (your ~/.ssh/config, keys,
agent and known_hosts; an unknown or changed host key is refused).`,
		Args: cobra.NoArgs,
	}
	c.AddCommand(a.hostsStatusCommand())
	return c
}

func (a *app) hostsStatusCommand() *cobra.Command {
	c := &cobra.Command{
		Use:     "status [--json]",
		Example: "  rekey hosts status\n  rekey hosts status --json",
		Short:   "Per host: reachable, host key known, which version of each secret its .env holds",
		Long: `status reads the .env of every ssh target of the environment and prints,
per host, whether it was reached, whether its host key is known (ok,
unknown, changed), and per secret which version of the store it holds, by
fingerprint: current, an older version (with its label), unknown (a value
the store never held: drift, never overwritten by a rotation) or absent.
No value is printed or unsealed. It exits 0 when every host is reachable
and holds the current version of everything it receives, else 4 (the
lines say which host and what to do). --json prints an array of
{target, host, path, reachable, host_key, error, secrets: [{name, state,
version, label, fingerprint}]}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			hs, err := a.s().HostsStatus(cmd.Context())
			if err != nil {
				return err
			}
			if a.jsonOut {
				if err := a.printJSON(hs); err != nil {
					return err
				}
			} else {
				a.printHosts(hs)
			}
			var bad []string
			for _, h := range hs {
				if !h.InSync() {
					bad = append(bad, h.Target)
				}
			}
			if len(bad) > 0 {
				return rekey.Errorf(rekey.CodeConflict, "%d of %d hosts are not on the current values: %v", len(bad), len(hs), bad).
					WithHint("unreachable: `ssh HOST true` must answer; unknown: drift, see `rekey publish` after checking the host; older: `rekey recover`, or rotate again")
			}
			return nil
		},
	}
	c.Flags().BoolVar(&a.jsonOut, "json", false, "print JSON")
	return c
}

func (a *app) printHosts(hs []rkapp.HostStatus) {
	w := a.out()
	if len(hs) == 0 {
		fmt.Fprintln(w, "no target of type ssh in this environment (rekey.yaml: targets: {web1: {type: ssh, host: deploy@web1, path: /srv/app/.env}})")
		return
	}
	for _, h := range hs {
		state := "reachable, host key ok"
		switch {
		case h.HostKey == "unknown":
			state = a.paint("FAIL") + " host key not in known_hosts"
		case h.HostKey == "changed":
			state = a.paint("FAIL") + " host key CHANGED"
		case !h.Reachable:
			state = a.paint("FAIL") + " unreachable"
		case h.Error != "":
			state = "reachable, host key ok; " + a.paint("FAIL") + " " + h.Error
		}
		fmt.Fprintf(w, "%s  %s:%s  %s\n", h.Target, h.Host, h.Path, state)
		if !h.Reachable && h.Error != "" {
			fmt.Fprintf(w, "  %s\n", h.Error)
		}
		for _, s := range h.Secrets {
			what := s.State
			switch s.State {
			case rkapp.HostCurrent:
				what = fmt.Sprintf("v%d current", s.Version)
			case rkapp.HostOlder:
				what = fmt.Sprintf("v%d %s (not current)", s.Version, orNone(s.Label))
			case rkapp.HostUnknown:
				what = "UNKNOWN value (drift)"
			case rkapp.HostAbsent:
				what = "absent"
			}
			fp := ""
			if s.Fingerprint != "" {
				fp = "  " + s.Fingerprint
			}
			fmt.Fprintf(w, "  %-24s %s%s\n", s.Name, what, fp)
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "unlabeled"
	}
	return s
}
