package config

import (
	"net"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/rekeyhq/rekey"
)

// This file holds the services: and checks: sections.
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
//
//	checks:
//	  login:
//	    http:
//	      method: POST
//	      url: http://localhost:8080/api/login
//	      headers: {Content-Type: application/json}
//	      body: '{"email": "smoke@example.com", "password": "{{ SMOKE_PASSWORD | json }}"}'
//	      expect: 200                       # or a list; default any 2xx
//	      json_field: token                 # must be in the JSON response (a.b for nested)
//	    retries: 5                          # attempts after the first (default 2)
//	    backoff: 1s                         # before the first retry, doubled after each (default 1s)
//	    timeout: 10s                        # each attempt (default 10s)
//	    deadline: 60s                       # all attempts (default 60s)
//	  db-port: {tcp: {address: "localhost:5432"}}
//	  db: {postgres: {url: DATABASE_URL}}
//	  patients: {sql: {url: DATABASE_URL, query: "SELECT count(*) FROM patients", expect: "20"}}
//	  pii:
//	    decrypt-sample: {url: DATABASE_URL, column: patients.email, rows: 10, key: ENCRYPTION_KEY, codec: aes-256-gcm, encoding: base64}
//	  smoke: {command: [./scripts/smoke-test]}

// Defaults of services and checks.
const (
	DefaultServiceTimeout = 60 * time.Second // start, stop, restart
	DefaultStatusTimeout  = 10 * time.Second
	DefaultCheckRetries   = 2
	DefaultCheckBackoff   = time.Second
	DefaultCheckTimeout   = 10 * time.Second
	DefaultCheckDeadline  = 60 * time.Second
	DefaultSampleRows     = 10
)

// Command is a command rekey runs: an argv list run as is, or a shell
// command (text) run with `sh -c`. It runs in the project folder (the
// folder of rekey.yaml) with rekey's environment, and never holds a secret
// value: rekey.yaml holds none, and templates are refused here.
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
func (s Service) In(env string) bool {
	return len(s.Environments) == 0 || slices.Contains(s.Environments, env)
}

// The check types.
const (
	CheckHTTP          = "http"
	CheckTCP           = "tcp"
	CheckPostgres      = "postgres"
	CheckSQL           = "sql"
	CheckDecryptSample = "decrypt-sample"
	CheckCommand       = "command"
)

// CheckTypes lists the check types.
var CheckTypes = []string{CheckHTTP, CheckTCP, CheckPostgres, CheckSQL, CheckDecryptSample, CheckCommand}

// Check is a verification run after a rotation and by `rekey verify`.
// Exactly one of HTTP, TCP, Postgres, SQL, DecryptSample and Command is set,
// as Type says.
type Check struct {
	Name     string
	Type     string
	Retries  int           // attempts after the first
	Backoff  time.Duration // wait before the first retry, doubled after each
	Timeout  time.Duration // each attempt
	Deadline time.Duration // all attempts together
	// Environments the check applies to; empty means every environment.
	Environments []string

	HTTP          *HTTPCheck
	TCP           *TCPCheck
	Postgres      *PostgresCheck
	SQL           *SQLCheck
	DecryptSample *DecryptSample
	Command       *Command // its Timeout is the check's Timeout
	Line          int
}

// In reports whether the check applies to environment env.
func (c Check) In(env string) bool {
	return len(c.Environments) == 0 || slices.Contains(c.Environments, env)
}

// Refs lists the secrets and derived values the check reads, in order,
// without repeats.
func (c Check) Refs() []string {
	var out []string
	add := func(names ...string) {
		for _, n := range names {
			if n != "" && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	tmpl := func(t *rekey.Template) {
		if t != nil {
			add(t.Refs()...)
		}
	}
	switch {
	case c.HTTP != nil:
		tmpl(c.HTTP.URL)
		for _, h := range c.HTTP.Headers {
			tmpl(h.Value)
		}
		tmpl(c.HTTP.Body)
	case c.TCP != nil:
		tmpl(c.TCP.Address)
	case c.Postgres != nil:
		add(c.Postgres.URL)
	case c.SQL != nil:
		add(c.SQL.URL)
	case c.DecryptSample != nil:
		add(c.DecryptSample.URL, c.DecryptSample.Key)
	}
	return out
}

// HTTPCheck sends a request and checks the response status and, optionally,
// that a field is present in its JSON body. URL, header values and body are
// templates that may reference secrets and derived values.
type HTTPCheck struct {
	Method    string // default GET
	URL       *rekey.Template
	Headers   []Header        // file order
	Body      *rekey.Template // nil: no body
	Expect    []int           // accepted statuses; empty means any 2xx
	JSONField string          // dotted path (data.token) that must be present and not null
	// FollowRedirects says which redirects the check follows: none ("",
	// the default: a redirect fails the check) or RedirectsSameOrigin (same
	// scheme, host and port only; never https to http).
	FollowRedirects string
}

// The values of HTTPCheck.FollowRedirects (follow_redirects: in rekey.yaml).
const (
	RedirectsNone       = "none"
	RedirectsSameOrigin = "same-origin"
)

// Header is one HTTP request header.
type Header struct {
	Name  string
	Value *rekey.Template
}

// TCPCheck connects to host:port (a template).
type TCPCheck struct {
	Address *rekey.Template
}

// PostgresCheck logs in with the connection URL held by the secret or
// derived value URL and runs SELECT 1.
type PostgresCheck struct {
	URL string // name of a secret or derived value holding a postgres:// URL
}

// SQLCheck runs Query (which returns one value) through URL and compares
// the value's text with Expect.
type SQLCheck struct {
	URL    string
	Query  string
	Expect string
}

// DecryptSample reads Rows non-null values of Table.Column through URL and
// opens each with the current value of Key. Codec and Encoding are passed
// to the opener as written.
type DecryptSample struct {
	URL      string
	Table    string // may be schema.table
	Column   string
	Rows     int
	Key      string // a managed secret (a data key)
	Codec    string
	Encoding string
}

// ServicesFor returns the services of environment env in restart order:
// by Order, ties in file order.
func (c *Config) ServicesFor(env string) []Service {
	var out []Service
	for _, s := range c.Services {
		if s.In(env) {
			out = append(out, s)
		}
	}
	slices.SortStableFunc(out, func(a, b Service) int { return a.Order - b.Order })
	return out
}

// ChecksFor returns the checks of environment env in file order.
func (c *Config) ChecksFor(env string) []Check {
	var out []Check
	for _, k := range c.Checks {
		if k.In(env) {
			out = append(out, k)
		}
	}
	return out
}

// Decoding.

// known holds the names that services and checks may reference, read from
// the root mapping, so that the sections can be decoded in any file order.
type known struct {
	secrets, derived, envs []string
	secretsOK, envsOK      bool
}

func knownNames(root *yaml.Node) known {
	var k known
	keys := func(n *yaml.Node) ([]string, bool) {
		n = resolve(n)
		if isNull(n) {
			return nil, true
		}
		if n.Kind != yaml.MappingNode {
			return nil, false
		}
		var out []string
		for i := 0; i+1 < len(n.Content); i += 2 {
			if kn := resolve(n.Content[i]); kn.Kind == yaml.ScalarNode {
				out = append(out, kn.Value)
			}
		}
		return out, true
	}
	get := func(m *yaml.Node, key string) *yaml.Node {
		m = resolve(m)
		if m == nil || m.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(m.Content); i += 2 {
			if resolve(m.Content[i]).Value == key {
				return m.Content[i+1]
			}
		}
		return nil
	}
	k.secrets, k.secretsOK = keys(get(root, "secrets"))
	d, _ := keys(get(root, "derived"))
	k.derived = d
	envs := resolve(get(root, "environments"))
	k.envs, k.envsOK = keys(envs)
	for _, e := range k.envs {
		ed, _ := keys(get(get(envs, e), "derived"))
		for _, n := range ed {
			if !slices.Contains(k.derived, n) {
				k.derived = append(k.derived, n)
			}
		}
	}
	return k
}

// ref checks that name (at node n) is a secret or a derived value.
func (d *decoder) ref(n *yaml.Node, name, what string, k known) {
	if !k.secretsOK || slices.Contains(k.secrets, name) || slices.Contains(k.derived, name) {
		return
	}
	all := append(slices.Clone(k.secrets), k.derived...)
	d.fail(n, didYouMean(name, all)+"name a secret under secrets or a value under derived",
		"%s references %s, which is not a secret or derived value", what, quote(name))
}

// secretRef checks that name is a managed secret.
func (d *decoder) secretRef(n *yaml.Node, name, what string, k known) {
	if !k.secretsOK || slices.Contains(k.secrets, name) {
		return
	}
	hint := didYouMean(name, k.secrets) + "name a secret under secrets"
	if slices.Contains(k.derived, name) {
		hint = "name the secret itself (a data key), not a derived value"
	}
	d.fail(n, hint, "%s: %s is not a managed secret", what, quote(name))
}

// envList reads environments: [a, b], which must be defined.
func (d *decoder) envList(v *yaml.Node, what string, k known) []string {
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
func (d *decoder) command(v *yaml.Node, what string, withTimeout bool) (Command, bool) {
	var c Command
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

func (d *decoder) services(k, v, root *yaml.Node) []Service {
	names := knownNames(root)
	var out []Service
	d.entries(v, "service", "services", func(k, v *yaml.Node) {
		if s, ok := d.service(k, v, names); ok {
			out = append(out, s)
		}
	})
	return out
}

func (d *decoder) service(key, v *yaml.Node, names known) (Service, bool) {
	s := Service{Name: key.Value, Line: key.Line}
	if !targetName.MatchString(s.Name) {
		d.fail(key, "service names are letters, digits, - and _, starting with a letter or digit", "invalid service name %s", quote(s.Name))
	}
	what := label("service", s.Name)
	timeout := DefaultServiceTimeout
	var restart, start, stop, status *Command
	var shorthand *yaml.Node
	var consumesKey *yaml.Node
	cmd := func(dst **Command, name string) func(k, v *yaml.Node) {
		return func(k, v *yaml.Node) {
			if c, ok := d.command(v, name+" of "+what, true); ok {
				*dst = &c
			}
		}
	}
	var shortSystemd, shortCompose *Service
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
			{"consumes", func(k, v *yaml.Node) {
				consumesKey = k
				v = resolve(v)
				if v.Kind == yaml.ScalarNode && v.Value == "all" {
					s.ConsumesAll = true
					return
				}
				list, nodes, _ := d.names(v, "consumes of "+what, "[JWT_SECRET, DATABASE_URL]", "list what the service reads, or write consumes: all")
				for i, n := range list {
					d.ref(nodes[i], n, "consumes of "+what, names)
				}
				s.Consumes = list
			}},
			{"order", func(k, v *yaml.Node) { s.Order, _ = d.integer(v, "order of "+what, "order: 1") }},
			{"environments", func(k, v *yaml.Node) { s.Environments = d.envList(v, what, names) }},
			{"systemd", func(k, v *yaml.Node) {
				if shorthand != nil {
					d.fail(k, "a service is either systemd or compose", "%s has both systemd and compose", what)
					return
				}
				shorthand = v
				if unit, ok := d.word(v, "systemd unit of "+what, "systemd: atlas-api.service"); ok {
					shortSystemd = &Service{
						Restart: Command{Argv: []string{"systemctl", "restart", unit}},
						Start:   Command{Argv: []string{"systemctl", "start", unit}},
						Stop:    Command{Argv: []string{"systemctl", "stop", unit}},
						Status:  Command{Argv: []string{"systemctl", "is-active", "--quiet", unit}},
					}
				}
			}},
			{"compose", func(k, v *yaml.Node) {
				if shorthand != nil {
					d.fail(k, "a service is either systemd or compose", "%s has both systemd and compose", what)
					return
				}
				shorthand = v
				shortCompose = d.compose(v, what)
			}},
		},
	})
	if !ok {
		return s, false
	}
	if sh := shortSystemd; sh != nil || shortCompose != nil {
		if sh == nil {
			sh = shortCompose
		}
		s.Restart, s.Start, s.Stop, s.Status = sh.Restart, sh.Start, sh.Stop, sh.Status
	}
	set := func(dst *Command, c *Command) {
		if c != nil {
			*dst = *c
		}
	}
	set(&s.Restart, restart)
	set(&s.Start, start)
	set(&s.Stop, stop)
	set(&s.Status, status)
	for _, c := range []*Command{&s.Restart, &s.Start, &s.Stop} {
		if !c.IsZero() && c.Timeout == 0 {
			c.Timeout = timeout
		}
	}
	if !s.Status.IsZero() && s.Status.Timeout == 0 {
		s.Status.Timeout = DefaultStatusTimeout
	}
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

// compose expands compose: {file: PATH, service: NAME}. Restart recreates
// the container (`up -d --force-recreate`): `docker compose restart` would
// keep the old environment.
func (d *decoder) compose(v *yaml.Node, svc string) *Service {
	what := "compose of " + svc
	var file, name string
	var nameKey *yaml.Node
	_, ok := d.decode(v, section{
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
			{"service", func(k, v *yaml.Node) {
				nameKey = k
				name, _ = d.word(v, "service of "+what, "service: web")
			}},
		},
	})
	if !ok {
		return nil
	}
	if nameKey == nil {
		d.missing(v, v, "add service: NAME (the service's name in the compose file)", "%s has no service", what)
		return nil
	}
	if name == "" {
		return nil
	}
	base := []string{"docker", "compose"}
	if file != "" {
		base = append(base, "-f", file)
	}
	with := func(args ...string) Command { return Command{Argv: append(slices.Clone(base), args...)} }
	// sh -c SCRIPT sh [-f FILE] ps --status running --quiet NAME: the
	// service is running when compose lists a running container for it.
	status := Command{Argv: append([]string{"sh", "-c", `test -n "$(docker compose "$@")"`, "sh"}, base[2:]...)}
	status.Argv = append(status.Argv, "ps", "--status", "running", "--quiet", name)
	return &Service{
		Restart: with("up", "-d", "--no-deps", "--force-recreate", name),
		Start:   with("up", "-d", "--no-deps", name),
		Stop:    with("stop", name),
		Status:  status,
	}
}

func (d *decoder) checks(k, v, root *yaml.Node) []Check {
	names := knownNames(root)
	var out []Check
	d.entries(v, "check", "checks", func(k, v *yaml.Node) {
		if c, ok := d.check1(k, v, names); ok {
			out = append(out, c)
		}
	})
	return out
}

func (d *decoder) check1(key, v *yaml.Node, names known) (Check, bool) {
	c := Check{Name: key.Value, Line: key.Line, Retries: DefaultCheckRetries, Backoff: DefaultCheckBackoff, Timeout: DefaultCheckTimeout, Deadline: DefaultCheckDeadline}
	if !targetName.MatchString(c.Name) {
		d.fail(key, "check names are letters, digits, - and _, starting with a letter or digit", "invalid check name %s", quote(c.Name))
	}
	what := label("check", c.Name)
	var typeKey *yaml.Node
	typed := func(typ string, fn func(v *yaml.Node)) field {
		return field{typ, func(k, v *yaml.Node) {
			if typeKey != nil {
				d.fail(k, "a check has one type: split it into two checks", "%s has both %s and %s", what, typeKey.Value, typ)
				return
			}
			typeKey, c.Type = k, typ
			fn(v)
		}}
	}
	var timeoutKey, deadlineKey *yaml.Node
	_, ok := d.decode(v, section{
		what: what,
		fields: []field{
			typed(CheckHTTP, func(v *yaml.Node) { c.HTTP = d.httpCheck(v, what, names) }),
			typed(CheckTCP, func(v *yaml.Node) { c.TCP = d.tcpCheck(v, what, names) }),
			typed(CheckPostgres, func(v *yaml.Node) { c.Postgres = d.postgresCheck(v, what, names) }),
			typed(CheckSQL, func(v *yaml.Node) { c.SQL = d.sqlCheck(v, what, names) }),
			typed(CheckDecryptSample, func(v *yaml.Node) { c.DecryptSample = d.decryptSample(v, what, names) }),
			typed(CheckCommand, func(v *yaml.Node) {
				if cmd, ok := d.command(v, "command of "+what, false); ok {
					c.Command = &cmd
				}
			}),
			{"retries", func(k, v *yaml.Node) {
				n, ok := d.integer(v, "retries of "+what, "retries: 3")
				if !ok || isNull(v) {
					return
				}
				if n < 0 || n > 100 {
					d.fail(v, "retries counts the attempts after the first: 0 to 100", "retries of %s must be between 0 and 100", what)
					return
				}
				c.Retries = n
			}},
			{"backoff", func(k, v *yaml.Node) {
				if t, ok := d.duration(v, "backoff of "+what); ok && t > 0 {
					c.Backoff = t
				}
			}},
			{"timeout", func(k, v *yaml.Node) {
				timeoutKey = k
				if t, ok := d.duration(v, "timeout of "+what); ok && t > 0 {
					c.Timeout = t
				}
			}},
			{"deadline", func(k, v *yaml.Node) {
				deadlineKey = k
				if t, ok := d.duration(v, "deadline of "+what); ok && t > 0 {
					c.Deadline = t
				}
			}},
			{"environments", func(k, v *yaml.Node) { c.Environments = d.envList(v, what, names) }},
		},
		misplaced: map[string]string{
			"url": "the check's type (http: {url: ...}, postgres: {url: ...})", "method": "http", "headers": "http", "body": "http",
			"expect": "http or sql", "json_field": "http", "address": "tcp", "query": "sql", "column": "decrypt-sample",
		},
	})
	if !ok {
		return c, false
	}
	if typeKey == nil {
		d.missing(key, v, "add one of "+strings.Join(CheckTypes, ", ")+", e.g. http: {url: http://localhost:8080/health}", "%s has no type", what)
		return c, false
	}
	if c.Timeout > c.Deadline {
		if timeoutKey != nil && deadlineKey != nil {
			d.fail(timeoutKey, "the deadline bounds all attempts together: make it at least the timeout of one attempt", "timeout of %s is longer than its deadline", what)
			return c, false
		}
		if deadlineKey != nil {
			c.Timeout = c.Deadline
		} else {
			c.Deadline = c.Timeout
		}
	}
	if c.Command != nil {
		c.Command.Timeout = c.Timeout
	}
	return c, c.HTTP != nil || c.TCP != nil || c.Postgres != nil || c.SQL != nil || c.DecryptSample != nil || c.Command != nil
}

// template reads a check template whose references must be secrets or
// derived values. The text is never quoted in messages.
func (d *decoder) template(v *yaml.Node, what string, names known) *rekey.Template {
	v = resolve(v)
	if isNull(v) {
		return nil
	}
	if v.Kind != yaml.ScalarNode {
		d.fail(v, "write it as text, in quotes if needed", "%s must be text, not %s", what, kindOf(v))
		return nil
	}
	t, err := rekey.ParseTemplate(v.Value)
	if err != nil {
		hint := rekey.ErrorHint(err)
		if hint == "" {
			hint = "write {{ NAME }} or {{ NAME | urlquery }}"
		}
		d.fail(v, hint, "%s: %s", what, errMsg(err))
		return nil
	}
	for _, r := range t.Refs() {
		d.ref(v, r, what, names)
	}
	return t
}

func (d *decoder) httpCheck(v *yaml.Node, check string, names known) *HTTPCheck {
	h := &HTTPCheck{Method: "GET"}
	what := "http of " + check
	var urlKey *yaml.Node
	_, ok := d.decode(v, section{
		what: what,
		fields: []field{
			{"method", func(k, v *yaml.Node) {
				s, ok := d.text(v, "method of "+what)
				if !ok || isNull(v) {
					return
				}
				m := strings.ToUpper(s)
				if !regexpToken(m) {
					d.fail(v, "for example GET, POST, PUT, HEAD", "method of %s is not an HTTP method", check)
					return
				}
				h.Method = m
			}},
			{"url", func(k, v *yaml.Node) {
				urlKey = k
				h.URL = d.template(v, "url of "+check, names)
				if h.URL != nil {
					src := h.URL.Source()
					if !strings.HasPrefix(src, "http://") && !strings.HasPrefix(src, "https://") {
						d.fail(v, "write a full URL, e.g. http://localhost:8080/health", "url of %s must start with http:// or https://", check)
						h.URL = nil
					}
				}
			}},
			{"headers", func(k, v *yaml.Node) {
				d.entries(v, "header", "headers of "+check, func(k, v *yaml.Node) {
					if !regexpToken(k.Value) {
						d.fail(k, "header names are letters, digits and -", "invalid header name %s in %s", quote(k.Value), check)
						return
					}
					t := d.template(v, "header "+k.Value+" of "+check, names)
					if t == nil && isNull(v) {
						t, _ = rekey.ParseTemplate("")
					}
					if t != nil {
						h.Headers = append(h.Headers, Header{Name: k.Value, Value: t})
					}
				})
			}},
			{"body", func(k, v *yaml.Node) { h.Body = d.template(v, "body of "+check, names) }},
			{"expect", func(k, v *yaml.Node) { h.Expect = d.statuses(v, "expect of "+check) }},
			{"json_field", func(k, v *yaml.Node) {
				s, ok := d.text(v, "json_field of "+check)
				if !ok || isNull(v) {
					return
				}
				if s == "" || strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
					d.fail(v, "name a field of the JSON response, e.g. token, or data.token for a nested one", "json_field of %s is not a field path", check)
					return
				}
				h.JSONField = s
			}},
			{"follow_redirects", func(k, v *yaml.Node) {
				s, ok := d.text(v, "follow_redirects of "+check)
				if !ok || isNull(v) {
					return
				}
				if s != RedirectsNone && s != RedirectsSameOrigin {
					d.fail(v, "write follow_redirects: same-origin (same scheme, host and port), or none (the default)", "follow_redirects of %s must be none or same-origin, not %s", check, quote(s))
					return
				}
				if s == RedirectsSameOrigin {
					h.FollowRedirects = s
				}
			}},
		},
	})
	if !ok {
		return nil
	}
	if urlKey == nil {
		d.missing(v, v, "add url: http://localhost:8080/health", "%s has no url", what)
		return nil
	}
	if h.URL == nil {
		return nil
	}
	return h
}

// regexpToken reports whether s is an HTTP token (method, header name).
func regexpToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", r)) {
			return false
		}
	}
	return true
}

func (d *decoder) statuses(v *yaml.Node, what string) []int {
	v = resolve(v)
	var items []*yaml.Node
	switch {
	case isNull(v):
		return nil
	case v.Kind == yaml.SequenceNode:
		items = v.Content
	default:
		items = []*yaml.Node{v}
	}
	var out []int
	for _, it := range items {
		n, ok := d.integer(resolve(it), what, "expect: 200, or expect: [200, 204]")
		if !ok {
			return nil
		}
		if n < 100 || n > 599 {
			d.fail(it, "HTTP statuses are 100 to 599, e.g. expect: 200", "%s: %d is not an HTTP status", what, n)
			return nil
		}
		out = append(out, n)
	}
	return out
}

func (d *decoder) tcpCheck(v *yaml.Node, check string, names known) *TCPCheck {
	t := &TCPCheck{}
	what := "tcp of " + check
	var addrKey *yaml.Node
	_, ok := d.decode(v, section{
		what: what,
		fields: []field{
			{"address", func(k, v *yaml.Node) {
				addrKey = k
				t.Address = d.template(v, "address of "+check, names)
				if t.Address != nil && len(t.Address.Refs()) == 0 {
					if _, port, err := net.SplitHostPort(t.Address.Source()); err != nil || port == "" {
						d.fail(v, "write host:port, e.g. localhost:5432", "address of %s is not host:port", check)
						t.Address = nil
					}
				}
			}},
		},
	})
	if !ok {
		return nil
	}
	if addrKey == nil {
		d.missing(v, v, "add address: localhost:5432", "%s has no address", what)
		return nil
	}
	if t.Address == nil {
		return nil
	}
	return t
}

// urlName reads url: NAME, the secret or derived value holding a
// connection URL. A URL written in its place is never quoted back.
func (d *decoder) urlName(v *yaml.Node, what string, names known) string {
	s, ok := d.text(v, what)
	if !ok || isNull(v) {
		return ""
	}
	if !varName.MatchString(s) {
		d.fail(v, "url names the secret or derived value holding the connection URL, e.g. url: DATABASE_URL (if you pasted a URL with a password here, remove it and rotate the password)", "%s must be the name of a secret or derived value", what)
		return ""
	}
	d.ref(v, s, what, names)
	return s
}

// dbCheck decodes the keys shared by the database checks (url) and more,
// the type's own keys. It reports whether url was read.
func (d *decoder) dbCheck(v *yaml.Node, what, check string, names known, url *string, more ...field) bool {
	var urlKey *yaml.Node
	fields := append([]field{{"url", func(k, v *yaml.Node) { urlKey = k; *url = d.urlName(v, "url of "+check, names) }}}, more...)
	_, ok := d.decode(v, section{what: what, fields: fields})
	if !ok {
		return false
	}
	if urlKey == nil {
		d.missing(v, v, "add url: DATABASE_URL (the secret or derived value holding the connection URL)", "%s has no url", what)
		return false
	}
	return *url != ""
}

func (d *decoder) postgresCheck(v *yaml.Node, check string, names known) *PostgresCheck {
	p := &PostgresCheck{}
	if !d.dbCheck(v, "postgres of "+check, check, names, &p.URL) {
		return nil
	}
	return p
}

func (d *decoder) sqlCheck(v *yaml.Node, check string, names known) *SQLCheck {
	s := &SQLCheck{}
	what := "sql of " + check
	var queryKey, expectKey *yaml.Node
	ok := d.dbCheck(v, what, check, names, &s.URL,
		field{"query", func(k, v *yaml.Node) {
			queryKey = k
			if q, ok := d.text(v, "query of "+check); ok {
				s.Query = q
			}
		}},
		field{"expect", func(k, v *yaml.Node) {
			expectKey = k
			v = resolve(v)
			if v.Kind != yaml.ScalarNode || isNull(v) {
				d.fail(v, `write the value the query returns as text, e.g. expect: "1" or expect: "true"`, "expect of %s must be a value, not %s", check, kindOf(v))
				return
			}
			s.Expect = v.Value
		}},
	)
	if queryKey == nil && ok {
		d.missing(v, v, "add query: SELECT ... (returning one value)", "%s has no query", what)
		return nil
	}
	if expectKey == nil && ok {
		d.missing(v, v, `add expect: the value the query must return, e.g. expect: "1"`, "%s has no expect", what)
		return nil
	}
	if !ok || strings.TrimSpace(s.Query) == "" {
		if ok {
			d.fail(queryKey, "write the query, e.g. query: SELECT count(*) FROM users", "query of %s is empty", check)
		}
		return nil
	}
	return s
}

func (d *decoder) decryptSample(v *yaml.Node, check string, names known) *DecryptSample {
	s := &DecryptSample{Rows: DefaultSampleRows}
	what := "decrypt-sample of " + check
	var colKey, keyKey *yaml.Node
	ok := d.dbCheck(v, what, check, names, &s.URL,
		field{"column", func(k, v *yaml.Node) {
			colKey = k
			c, ok := d.text(v, "column of "+check)
			if !ok || isNull(v) {
				return
			}
			parts := strings.Split(c, ".")
			if len(parts) < 2 || len(parts) > 3 || slices.Contains(parts, "") || len(c) > 200 {
				d.fail(v, "write table.column (or schema.table.column), e.g. column: patients.email", "column of %s is not table.column", check)
				return
			}
			s.Table, s.Column = strings.Join(parts[:len(parts)-1], "."), parts[len(parts)-1]
		}},
		field{"rows", func(k, v *yaml.Node) {
			n, ok := d.integer(v, "rows of "+check, "rows: 10")
			if !ok || isNull(v) {
				return
			}
			if n < 1 || n > 10000 {
				d.fail(v, "sample 1 to 10000 rows; 10 is usually enough", "rows of %s must be between 1 and 10000", check)
				return
			}
			s.Rows = n
		}},
		field{"key", func(k, v *yaml.Node) {
			keyKey = k
			if t, ok := d.text(v, "key of "+check); ok && t != "" {
				s.Key = t
				d.secretRef(v, t, "key of "+check, names)
			}
		}},
		field{"codec", d.textTo(&s.Codec, "codec of "+check)},
		field{"encoding", d.textTo(&s.Encoding, "encoding of "+check)},
	)
	if !ok {
		return nil
	}
	if colKey == nil {
		d.missing(v, v, "add column: TABLE.COLUMN, e.g. column: patients.email", "%s has no column", what)
		return nil
	}
	if keyKey == nil {
		d.missing(v, v, "add key: ENCRYPTION_KEY (the data key the column is encrypted under)", "%s has no key", what)
		return nil
	}
	if s.Column == "" || s.Key == "" {
		return nil
	}
	return s
}

// Marshaling (for Marshal: call m.servicesAndChecks(c, root) after tls).

func (m *marshaler) servicesAndChecks(c *Config, root *mapNode) {
	if len(c.Services) > 0 {
		sm := newMap()
		for _, s := range c.Services {
			n := newMap()
			cmd := func(key string, x Command, def time.Duration) {
				if x.IsZero() {
					return
				}
				var v *yaml.Node
				if len(x.Argv) > 0 {
					v = flowList(x.Argv)
				} else {
					v = strNode(x.Shell)
				}
				if x.Timeout != 0 && x.Timeout != def {
					fm := newFlowMap()
					fm.add("run", v)
					fm.add("timeout", strNode(FormatDuration(x.Timeout)))
					n.add(key, fm)
					return
				}
				n.add(key, v)
			}
			cmd("restart", s.Restart, DefaultServiceTimeout)
			cmd("start", s.Start, DefaultServiceTimeout)
			cmd("stop", s.Stop, DefaultServiceTimeout)
			cmd("status", s.Status, DefaultStatusTimeout)
			if s.ConsumesAll {
				n.add("consumes", strNode("all"))
			} else {
				n.add("consumes", flowList(s.Consumes))
			}
			if s.Order != 0 {
				n.add("order", intNode(s.Order))
			}
			if len(s.Environments) > 0 {
				n.add("environments", flowList(s.Environments))
			}
			sm.add(s.Name, n)
		}
		root.add("services", sm)
	}
	if len(c.Checks) > 0 {
		cm := newMap()
		for _, k := range c.Checks {
			n := newMap()
			t := newMap()
			add := func(key, v string) {
				if v != "" {
					t.add(key, strNode(v))
				}
			}
			switch {
			case k.HTTP != nil:
				h := k.HTTP
				if h.Method != "GET" {
					add("method", h.Method)
				}
				add("url", h.URL.Source())
				if len(h.Headers) > 0 {
					hm := newMap()
					for _, x := range h.Headers {
						hm.add(x.Name, strNode(x.Value.Source()))
					}
					t.add("headers", hm)
				}
				if h.Body != nil {
					t.add("body", strNode(h.Body.Source()))
				}
				if len(h.Expect) > 0 {
					l := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
					for _, s := range h.Expect {
						l.Content = append(l.Content, intNode(s))
					}
					t.add("expect", l)
				}
				add("json_field", h.JSONField)
				n.add(CheckHTTP, t)
			case k.TCP != nil:
				add("address", k.TCP.Address.Source())
				n.add(CheckTCP, t)
			case k.Postgres != nil:
				add("url", k.Postgres.URL)
				n.add(CheckPostgres, t)
			case k.SQL != nil:
				add("url", k.SQL.URL)
				add("query", k.SQL.Query)
				t.add("expect", strNode(k.SQL.Expect))
				n.add(CheckSQL, t)
			case k.DecryptSample != nil:
				s := k.DecryptSample
				add("url", s.URL)
				add("column", s.Table+"."+s.Column)
				t.add("rows", intNode(s.Rows))
				add("key", s.Key)
				add("codec", s.Codec)
				add("encoding", s.Encoding)
				n.add(CheckDecryptSample, t)
			case k.Command != nil:
				if len(k.Command.Argv) > 0 {
					n.add(CheckCommand, flowList(k.Command.Argv))
				} else {
					n.add(CheckCommand, strNode(k.Command.Shell))
				}
			}
			if k.Retries != DefaultCheckRetries {
				n.add("retries", intNode(k.Retries))
			}
			if k.Backoff != DefaultCheckBackoff {
				n.add("backoff", strNode(FormatDuration(k.Backoff)))
			}
			if k.Timeout != DefaultCheckTimeout {
				n.add("timeout", strNode(FormatDuration(k.Timeout)))
			}
			if k.Deadline != DefaultCheckDeadline {
				n.add("deadline", strNode(FormatDuration(k.Deadline)))
			}
			if len(k.Environments) > 0 {
				n.add("environments", flowList(k.Environments))
			}
			cm.add(k.Name, n)
		}
		root.add("checks", cm)
	}
}
