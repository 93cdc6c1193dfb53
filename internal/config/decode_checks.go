package config

import (
	"net"
	"regexp"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/rekeyhq/rekey"
)

// This file decodes the checks: section.
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
//	  logs: {log: {journal: atlas.service, window: 30s, pattern: "panic|FATAL|ERROR"}}
//	  provider:                             # the key on stdin, never in argv or the environment
//	    command: [sh, -c, 'curl -sf -H "Authorization: Bearer $(cat)" https://api.example.com/v1/me']
//	    stdin: STRIPE_KEY

func (d *decoder) check1(key, v *yaml.Node) (rekey.Check, bool) {
	c := rekey.Check{Name: key.Value, Line: key.Line, Retries: rekey.DefaultCheckRetries, Backoff: rekey.DefaultCheckBackoff, Timeout: rekey.DefaultCheckTimeout, Deadline: rekey.DefaultCheckDeadline}
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
	var timeoutKey, deadlineKey, stdinKey *yaml.Node
	_, ok := d.decode(v, section{
		what: what,
		fields: []field{
			typed(rekey.CheckHTTP, func(v *yaml.Node) { c.HTTP = d.httpCheck(v, what) }),
			typed(rekey.CheckTCP, func(v *yaml.Node) { c.TCP = d.tcpCheck(v, what) }),
			typed(rekey.CheckPostgres, func(v *yaml.Node) { c.Postgres = d.postgresCheck(v, what) }),
			typed(rekey.CheckSQL, func(v *yaml.Node) { c.SQL = d.sqlCheck(v, what) }),
			typed(rekey.CheckDecryptSample, func(v *yaml.Node) { c.DecryptSample = d.decryptSample(v, what) }),
			typed(rekey.CheckCommand, func(v *yaml.Node) {
				if cmd, ok := d.command(v, "command of "+what, false); ok {
					c.Command = &cmd
				}
			}),
			typed(rekey.CheckLog, func(v *yaml.Node) { c.Log = d.logCheck(v, what) }),
			{"retries", d.intIn(&c.Retries, "retries of "+what, "retries: 3", 0, 100, "retries counts the attempts after the first: 0 to 100")},
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
			{"environments", func(k, v *yaml.Node) { c.Environments = d.envList(v, what) }},
			{"stdin", func(k, v *yaml.Node) {
				stdinKey = k
				if name, ok := d.word(v, "stdin of "+what, "stdin: STRIPE_KEY"); ok {
					c.Stdin = name
					d.secretRef(v, name, "stdin of "+what)
				}
			}},
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
		d.missing(key, v, "add one of "+strings.Join(rekey.CheckTypes, ", ")+", e.g. http: {url: http://localhost:8080/health}", "%s has no type", what)
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
	if stdinKey != nil && c.Command == nil {
		d.fail(stdinKey, "stdin: is for a command check, which reads the secret on its standard input", "%s has stdin but is not a command check", what)
		return c, false
	}
	if c.Command != nil {
		c.Command.Timeout = c.Timeout
	}
	if c.Log != nil {
		// One watch of the whole window: a matched line is final, and the
		// attempt and the deadline cover the window.
		c.Retries = 0
		c.Timeout = max(c.Timeout, c.Log.Window+5*time.Second)
		c.Deadline = max(c.Deadline, c.Timeout)
	}
	return c, c.HTTP != nil || c.TCP != nil || c.Postgres != nil || c.SQL != nil || c.DecryptSample != nil || c.Command != nil || c.Log != nil
}

// logCheck reads log: {file: PATH | command: [...] | journal: UNIT,
// window: 30s, pattern: RE2}.
func (d *decoder) logCheck(v *yaml.Node, check string) *rekey.LogCheck {
	l := &rekey.LogCheck{Window: rekey.DefaultLogWindow, Pattern: rekey.DefaultLogPattern}
	what := "log of " + check
	var sources []*yaml.Node
	_, ok := d.decode(v, section{
		what: what,
		fields: []field{
			{"file", func(k, v *yaml.Node) { sources = append(sources, k); d.path(v, "file of "+what, &l.File) }},
			{"command", func(k, v *yaml.Node) {
				sources = append(sources, k)
				if c, ok := d.command(v, "command of "+what, false); ok {
					l.Command = &c
				}
			}},
			{"journal", func(k, v *yaml.Node) {
				sources = append(sources, k)
				if unit, ok := d.word(v, "journal of "+what, "journal: atlas.service"); ok {
					l.Unit = unit
				}
			}},
			{"window", func(k, v *yaml.Node) {
				if t, ok := d.duration(v, "window of "+what); ok && t > 0 {
					l.Window = t
				}
			}},
			{"pattern", func(k, v *yaml.Node) {
				if v.Kind != yaml.ScalarNode || v.Value == "" {
					d.fail(v, `write a regular expression, e.g. pattern: "panic|FATAL|ERROR"`, "pattern of %s must be a regular expression", what)
					return
				}
				if _, err := regexp.Compile(v.Value); err != nil {
					d.fail(v, "fix the expression (Go's RE2 syntax: no lookbehind or backreferences)", "pattern of %s does not compile: %v", what, err)
					return
				}
				l.Pattern = v.Value
			}},
		},
	})
	switch {
	case !ok:
		return nil
	case len(sources) == 0:
		d.missing(v, v, "add file: /var/log/atlas.log, command: [...] or journal: atlas.service", "%s says no log to watch", what)
		return nil
	case len(sources) > 1:
		d.fail(sources[1], "watch one log per check: split it into two checks", "%s has both %s and %s", what, sources[0].Value, sources[1].Value)
		return nil
	case l.File == "" && l.Unit == "" && l.Command == nil:
		return nil
	}
	return l
}

// template reads a check template whose references must be secrets or
// derived values. The text is never quoted in messages.
func (d *decoder) template(v *yaml.Node, what string) *rekey.Template {
	v = resolve(v)
	if isNull(v) {
		return nil
	}
	if v.Kind != yaml.ScalarNode {
		d.fail(v, "write it as text, in quotes if needed", "%s must be text, not %s", what, kindOf(v))
		return nil
	}
	t := d.parseTemplate(v, what)
	if t == nil {
		return nil
	}
	for _, r := range t.Refs() {
		d.ref(v, r, what)
	}
	return t
}

func (d *decoder) httpCheck(v *yaml.Node, check string) *rekey.HTTPCheck {
	h := &rekey.HTTPCheck{Method: "GET"}
	what := "http of " + check
	ok := d.decodeRequired(v, section{
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
				h.URL = d.template(v, "url of "+check)
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
					t := d.template(v, "header "+k.Value+" of "+check)
					if t == nil && isNull(v) {
						t, _ = rekey.ParseTemplate("")
					}
					if t != nil {
						h.Headers = append(h.Headers, rekey.Header{Name: k.Value, Value: t})
					}
				})
			}},
			{"body", func(k, v *yaml.Node) { h.Body = d.template(v, "body of "+check) }},
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
				if s != rekey.RedirectsNone && s != rekey.RedirectsSameOrigin {
					d.fail(v, "write follow_redirects: same-origin (same scheme, host and port), or none (the default)", "follow_redirects of %s must be none or same-origin, not %s", check, quote(s))
					return
				}
				if s == rekey.RedirectsSameOrigin {
					h.FollowRedirects = s
				}
			}},
		},
	}, "url", "add url: http://localhost:8080/health")
	if !ok || h.URL == nil {
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

func (d *decoder) tcpCheck(v *yaml.Node, check string) *rekey.TCPCheck {
	t := &rekey.TCPCheck{}
	what := "tcp of " + check
	ok := d.decodeRequired(v, section{
		what: what,
		fields: []field{
			{"address", func(k, v *yaml.Node) {
				t.Address = d.template(v, "address of "+check)
				if t.Address != nil && len(t.Address.Refs()) == 0 {
					if _, port, err := net.SplitHostPort(t.Address.Source()); err != nil || port == "" {
						d.fail(v, "write host:port, e.g. localhost:5432", "address of %s is not host:port", check)
						t.Address = nil
					}
				}
			}},
		},
	}, "address", "add address: localhost:5432")
	if !ok || t.Address == nil {
		return nil
	}
	return t
}

// urlName reads url: NAME, the secret or derived value holding a
// connection URL. A URL written in its place is never quoted back.
func (d *decoder) urlName(v *yaml.Node, what string) string {
	s, ok := d.text(v, what)
	if !ok || isNull(v) {
		return ""
	}
	if !varName.MatchString(s) {
		d.fail(v, "url names the secret or derived value holding the connection URL, e.g. url: DATABASE_URL (if you pasted a URL with a password here, remove it and rotate the password)", "%s must be the name of a secret or derived value", what)
		return ""
	}
	d.ref(v, s, what)
	return s
}

// dbCheck decodes the keys shared by the database checks (url) and more,
// the type's own keys. It reports whether url was read.
func (d *decoder) dbCheck(v *yaml.Node, what, check string, url *string, more ...field) bool {
	fields := append([]field{{"url", func(k, v *yaml.Node) { *url = d.urlName(v, "url of "+check) }}}, more...)
	ok := d.decodeRequired(v, section{what: what, fields: fields}, "url", "add url: DATABASE_URL (the secret or derived value holding the connection URL)")
	return ok && *url != ""
}

func (d *decoder) postgresCheck(v *yaml.Node, check string) *rekey.PostgresCheck {
	p := &rekey.PostgresCheck{}
	if !d.dbCheck(v, "postgres of "+check, check, &p.URL) {
		return nil
	}
	return p
}

func (d *decoder) sqlCheck(v *yaml.Node, check string) *rekey.SQLCheck {
	s := &rekey.SQLCheck{}
	what := "sql of " + check
	var queryKey, expectKey *yaml.Node
	ok := d.dbCheck(v, what, check, &s.URL,
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

func (d *decoder) decryptSample(v *yaml.Node, check string) *rekey.DecryptSample {
	s := &rekey.DecryptSample{Rows: rekey.DefaultSampleRows}
	what := "decrypt-sample of " + check
	var colKey, keyKey *yaml.Node
	ok := d.dbCheck(v, what, check, &s.URL,
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
		field{"rows", d.intIn(&s.Rows, "rows of "+check, "rows: 10", 1, 10000, "sample 1 to 10000 rows; 10 is usually enough")},
		field{"key", func(k, v *yaml.Node) {
			keyKey = k
			if t, ok := d.text(v, "key of "+check); ok && t != "" {
				s.Key = t
				d.secretRef(v, t, "key of "+check)
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
