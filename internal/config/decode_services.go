package config

import (
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/rekeyhq/rekey"
)

// This file decodes the services: section into rekey.Service values.
//
//	services:
//	  api:
//	    systemd: atlas-api                  # shorthand for systemctl restart/start/stop/is-active
//	    consumes: [JWT_SECRET, DATABASE_URL]
//	  web:
//	    compose: {file: docker-compose.yml, service: web}
//	    consumes: all
//	  worker:
//	    restart: [./bin/worker, restart]    # a list is an argv, run as is
//	    status: "pgrep -f bin/worker"       # text is a shell command, run with sh -c
//	    stop: {run: [./bin/worker, stop], timeout: 2m}
//	    timeout: 90s                        # start, stop and restart (default 60s)
//	    order: 2                            # lower first; ties in file order
//	    environments: [production]          # default: every environment
//	    consumes: [DATABASE_URL]

// envList reads environments: [a, b], which must be defined.
func (d *decoder) envList(v *yaml.Node, what string) []string {
	k := d.known
	names, nodes, _ := d.names(v, "environments of "+what, "[production]", "remove environments to apply to every environment")
	for i, n := range names {
		if k.envsOK && !slices.Contains(k.envs, n) {
			d.fail(nodes[i], didYouMean(n, k.envs)+"environments: "+strings.Join(k.envs, ", "), "environments of %s: %s is not defined", what, quote(n))
		}
	}
	return names
}

// command reads a command: [argv...], "shell text", or {run: ..., timeout: D}
// (the mapping only when withTimeout).
func (d *decoder) command(v *yaml.Node, what string, withTimeout bool) (rekey.Command, bool) {
	var c rekey.Command
	v = resolve(v)
	switch {
	case isNull(v):
		d.fail(v, "write an argv list such as [systemctl, restart, api], or a shell command as text", "%s is empty", what)
		return c, false
	case v.Kind == yaml.MappingNode && withTimeout:
		var run *yaml.Node
		ok := true
		var timeout time.Duration
		_, isMap := d.decode(v, section{
			what: what,
			fields: []field{
				{"run", func(k, v *yaml.Node) { run = k; c, ok = d.command(v, "run of "+what, false) }},
				{"timeout", func(k, v *yaml.Node) { timeout, _ = d.duration(v, "timeout of "+what) }},
			},
		})
		if !isMap {
			return c, false
		}
		if run == nil {
			d.missing(v, v, "add run: [COMMAND, ARGS...] (or write the command itself in place of the mapping)", "%s has no run", what)
			return c, false
		}
		c.Timeout = timeout
		return c, ok
	case v.Kind == yaml.SequenceNode:
		if len(v.Content) == 0 {
			d.fail(v, "write the program and its arguments, e.g. [systemctl, restart, api]", "%s is an empty list", what)
			return c, false
		}
		for _, item := range v.Content {
			item = resolve(item)
			if item.Kind != yaml.ScalarNode || isNull(item) {
				d.fail(item, "write each argument as text, quoted if needed", "arguments of %s must be text, not %s", what, kindOf(item))
				return c, false
			}
			if strings.Contains(item.Value, "{{") {
				d.fail(item, "rekey never puts a secret in a command line; the command can read the .env, or run under `rekey run`", "%s: commands cannot reference secrets", what)
				return c, false
			}
			c.Argv = append(c.Argv, item.Value)
		}
		if c.Argv[0] == "" {
			d.fail(v.Content[0], "the first item is the program to run", "%s: the program is empty", what)
			return c, false
		}
		return c, true
	case v.Kind == yaml.ScalarNode:
		if strings.TrimSpace(v.Value) == "" {
			d.fail(v, "write an argv list such as [systemctl, restart, api], or a shell command as text", "%s is empty", what)
			return c, false
		}
		if strings.Contains(v.Value, "{{") {
			d.fail(v, "rekey never puts a secret in a command line; the command can read the .env, or run under `rekey run`", "%s: commands cannot reference secrets", what)
			return c, false
		}
		c.Shell = v.Value
		return c, true
	default:
		hint := "write an argv list such as [systemctl, restart, api], or a shell command as text"
		if withTimeout {
			hint += ", or {run: COMMAND, timeout: 30s}"
		}
		d.fail(v, hint, "%s must be a list or text, not %s", what, kindOf(v))
		return c, false
	}
}

// word reads a name-like argument for a shorthand (a unit, a compose
// service): not empty, not starting with -, no spaces.
func (d *decoder) word(v *yaml.Node, what, example string) (string, bool) {
	s, ok := d.text(v, what)
	if !ok {
		return "", false
	}
	if s == "" || strings.HasPrefix(s, "-") || strings.ContainsAny(s, " \t\n") {
		d.fail(v, "for example "+example, "%s must be a name", what)
		return "", false
	}
	return s, true
}

func (d *decoder) service(key, v *yaml.Node) (rekey.Service, bool) {
	s := rekey.Service{Name: key.Value, Line: key.Line}
	if !targetName.MatchString(s.Name) {
		d.fail(key, "service names are letters, digits, - and _, starting with a letter or digit", "invalid service name %s", quote(s.Name))
	}
	what := label("service", s.Name)
	timeout := rekey.DefaultServiceTimeout
	var restart, start, stop, status *rekey.Command
	var shorthand, consumesKey *yaml.Node
	var short *rekey.Service // what systemd: or compose: expands to
	cmd := func(dst **rekey.Command, name string) func(k, v *yaml.Node) {
		return func(k, v *yaml.Node) {
			if c, ok := d.command(v, name+" of "+what, true); ok {
				*dst = &c
			}
		}
	}
	shorthandOf := func(expand func(v *yaml.Node) *rekey.Service) func(k, v *yaml.Node) {
		return func(k, v *yaml.Node) {
			if shorthand != nil {
				d.fail(k, "a service is either systemd or compose", "%s has both systemd and compose", what)
				return
			}
			shorthand = v
			short = expand(v)
		}
	}
	_, ok := d.decode(v, section{
		what: what,
		fields: []field{
			{"restart", cmd(&restart, "restart")},
			{"start", cmd(&start, "start")},
			{"stop", cmd(&stop, "stop")},
			{"status", cmd(&status, "status")},
			{"timeout", func(k, v *yaml.Node) {
				if t, ok := d.duration(v, "timeout of "+what); ok && t > 0 {
					timeout = t
				}
			}},
			{"consumes", func(k, v *yaml.Node) { consumesKey = k; d.consumes(v, what, &s) }},
			{"order", func(k, v *yaml.Node) { s.Order, _ = d.integer(v, "order of "+what, "order: 1") }},
			{"environments", func(k, v *yaml.Node) { s.Environments = d.envList(v, what) }},
			{"systemd", shorthandOf(func(v *yaml.Node) *rekey.Service { return d.systemd(v, what) })},
			{"compose", shorthandOf(func(v *yaml.Node) *rekey.Service { return d.compose(v, what) })},
		},
	})
	if !ok {
		return s, false
	}
	setCommands(&s, short, [4]*rekey.Command{restart, start, stop, status}, timeout)
	if s.Restart.IsZero() && (s.Start.IsZero() || s.Stop.IsZero()) && shorthand == nil {
		d.missing(key, v, "add restart: [systemctl, restart, UNIT] (or start and stop, or the shorthand systemd: UNIT or compose: {service: NAME})", "%s has no restart command", what)
		return s, false
	}
	if consumesKey == nil {
		d.missing(key, v, "list what it reads, e.g. consumes: [JWT_SECRET, DATABASE_URL], or write consumes: all", "%s does not say what it consumes", what)
		return s, false
	}
	return s, true
}

// consumes reads consumes: all, or the list of what service s reads.
func (d *decoder) consumes(v *yaml.Node, what string, s *rekey.Service) {
	v = resolve(v)
	if v.Kind == yaml.ScalarNode && v.Value == "all" {
		s.ConsumesAll = true
		return
	}
	list, nodes, _ := d.names(v, "consumes of "+what, "[JWT_SECRET, DATABASE_URL]", "list what the service reads, or write consumes: all")
	for i, n := range list {
		d.ref(nodes[i], n, "consumes of "+what)
	}
	s.Consumes = list
}

// setCommands sets the commands of s: those of its shorthand (systemd: or
// compose:, when short is not nil), replaced by the ones written out
// (restart, start, stop, status; nil when not written). Start, stop and
// restart without a timeout of their own get timeout; status gets
// rekey.DefaultStatusTimeout.
func setCommands(s *rekey.Service, short *rekey.Service, written [4]*rekey.Command, timeout time.Duration) {
	if short != nil {
		s.Restart, s.Start, s.Stop, s.Status = short.Restart, short.Start, short.Stop, short.Status
	}
	for i, dst := range []*rekey.Command{&s.Restart, &s.Start, &s.Stop, &s.Status} {
		if written[i] != nil {
			*dst = *written[i]
		}
	}
	for _, c := range []*rekey.Command{&s.Restart, &s.Start, &s.Stop} {
		if !c.IsZero() && c.Timeout == 0 {
			c.Timeout = timeout
		}
	}
	if !s.Status.IsZero() && s.Status.Timeout == 0 {
		s.Status.Timeout = rekey.DefaultStatusTimeout
	}
}

// systemd expands systemd: UNIT into systemctl commands.
func (d *decoder) systemd(v *yaml.Node, svc string) *rekey.Service {
	unit, ok := d.word(v, "systemd unit of "+svc, "systemd: atlas-api.service")
	if !ok {
		return nil
	}
	return &rekey.Service{
		Restart: rekey.Command{Argv: []string{"systemctl", "restart", unit}},
		Start:   rekey.Command{Argv: []string{"systemctl", "start", unit}},
		Stop:    rekey.Command{Argv: []string{"systemctl", "stop", unit}},
		Status:  rekey.Command{Argv: []string{"systemctl", "is-active", "--quiet", unit}},
	}
}

// compose expands compose: {file: PATH, service: NAME}. Restart recreates
// the container (`up -d --force-recreate`): `docker compose restart` would
// keep the old environment.
func (d *decoder) compose(v *yaml.Node, svc string) *rekey.Service {
	what := "compose of " + svc
	var file, name string
	ok := d.decodeRequired(v, section{
		what: what,
		fields: []field{
			{"file", func(k, v *yaml.Node) {
				// Kept as written: commands run in the project folder.
				if f, ok := d.text(v, "file of "+what); ok && !isNull(v) {
					if f == "" || strings.HasPrefix(f, "-") {
						d.fail(v, "write the path of the compose file, relative to the folder of rekey.yaml", "file of %s is not a path", what)
						return
					}
					file = f
				}
			}},
			{"service", func(k, v *yaml.Node) { name, _ = d.word(v, "service of "+what, "service: web") }},
		},
	}, "service", "add service: NAME (the service's name in the compose file)")
	if !ok || name == "" {
		return nil
	}
	base := []string{"docker", "compose"}
	if file != "" {
		base = append(base, "-f", file)
	}
	with := func(args ...string) rekey.Command { return rekey.Command{Argv: append(slices.Clone(base), args...)} }
	// sh -c SCRIPT sh [-f FILE] ps --status running --quiet NAME: the
	// service is running when compose lists a running container for it.
	status := rekey.Command{Argv: append([]string{"sh", "-c", `test -n "$(docker compose "$@")"`, "sh"}, base[2:]...)}
	status.Argv = append(status.Argv, "ps", "--status", "running", "--quiet", name)
	return &rekey.Service{
		Restart: with("up", "-d", "--no-deps", "--force-recreate", name),
		Start:   with("up", "-d", "--no-deps", name),
		Stop:    with("stop", name),
		Status:  status,
	}
}
