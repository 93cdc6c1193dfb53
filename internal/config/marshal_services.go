package config

import (
	"time"

	"gopkg.in/yaml.v3"

	"github.com/rekeyhq/rekey"
)

// This file writes the services: and checks: sections (see Marshal).

// servicesAndChecks adds the services: and checks: sections of c to root.
func (m *marshaler) servicesAndChecks(c *Config, root *mapNode) {
	addNamed(root, "services", c.Services, serviceNode)
	addNamed(root, "checks", c.Checks, checkNode)
}

// serviceNode is the entry of one service in services:.
func serviceNode(s rekey.Service) (string, *mapNode) {
	n := newMap()
	addCommand(n, "restart", s.Restart, rekey.DefaultServiceTimeout)
	addCommand(n, "start", s.Start, rekey.DefaultServiceTimeout)
	addCommand(n, "stop", s.Stop, rekey.DefaultServiceTimeout)
	addCommand(n, "status", s.Status, rekey.DefaultStatusTimeout)
	if s.ConsumesAll {
		n.add("consumes", strNode("all"))
	} else {
		n.add("consumes", flowList(s.Consumes))
	}
	if s.Order != 0 {
		n.add("order", intNode(s.Order))
	}
	addList(n, "environments", s.Environments)
	return s.Name, n
}

// addCommand adds key: c to n, as {run: c, timeout: D} when c's timeout is
// not def; nothing when c is not set.
func addCommand(n *mapNode, key string, c rekey.Command, def time.Duration) {
	if c.IsZero() {
		return
	}
	v := commandNode(c)
	if c.Timeout != 0 && c.Timeout != def {
		fm := newFlowMap()
		fm.add("run", v)
		fm.add("timeout", strNode(rekey.FormatDuration(c.Timeout)))
		n.add(key, fm)
		return
	}
	n.add(key, v)
}

// commandNode is a command as rekey.yaml writes it: an argv list, or the
// shell text.
func commandNode(c rekey.Command) *yaml.Node {
	if len(c.Argv) > 0 {
		return flowList(c.Argv)
	}
	return strNode(c.Shell)
}

// checkNode is the entry of one check in checks:.
func checkNode(k rekey.Check) (string, *mapNode) {
	n := newMap()
	if typ, t := checkTypeNode(k); t != nil {
		n.add(typ, t)
	}
	if k.Retries != rekey.DefaultCheckRetries {
		n.add("retries", intNode(k.Retries))
	}
	addDuration(n, "backoff", k.Backoff, rekey.DefaultCheckBackoff)
	addDuration(n, "timeout", k.Timeout, rekey.DefaultCheckTimeout)
	addDuration(n, "deadline", k.Deadline, rekey.DefaultCheckDeadline)
	addList(n, "environments", k.Environments)
	if k.Stdin != "" {
		n.add("stdin", strNode(k.Stdin))
	}
	return k.Name, n
}

// addDuration adds key: d to n unless d is def.
func addDuration(n *mapNode, key string, d, def time.Duration) {
	if d != def {
		n.add(key, strNode(rekey.FormatDuration(d)))
	}
}

// checkTypeNode returns the key and the value of k's type: the mapping of
// http, tcp, postgres, sql or decrypt-sample, or the command.
func checkTypeNode(k rekey.Check) (string, *yaml.Node) {
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
		if h.FollowRedirects != "" && h.FollowRedirects != rekey.RedirectsNone {
			add("follow_redirects", h.FollowRedirects)
		}
		return rekey.CheckHTTP, t.Node
	case k.TCP != nil:
		add("address", k.TCP.Address.Source())
		return rekey.CheckTCP, t.Node
	case k.Postgres != nil:
		add("url", k.Postgres.URL)
		return rekey.CheckPostgres, t.Node
	case k.SQL != nil:
		add("url", k.SQL.URL)
		add("query", k.SQL.Query)
		t.add("expect", strNode(k.SQL.Expect))
		return rekey.CheckSQL, t.Node
	case k.DecryptSample != nil:
		s := k.DecryptSample
		add("url", s.URL)
		add("column", s.Table+"."+s.Column)
		t.add("rows", intNode(s.Rows))
		add("key", s.Key)
		add("codec", s.Codec)
		add("encoding", s.Encoding)
		return rekey.CheckDecryptSample, t.Node
	case k.Command != nil:
		return rekey.CheckCommand, commandNode(*k.Command)
	case k.Log != nil:
		switch {
		case k.Log.File != "":
			add("file", k.Log.File)
		case k.Log.Unit != "":
			add("journal", k.Log.Unit)
		default:
			t.add("command", commandNode(*k.Log.Command))
		}
		if k.Log.Window != rekey.DefaultLogWindow {
			add("window", rekey.FormatDuration(k.Log.Window))
		}
		if k.Log.Pattern != rekey.DefaultLogPattern {
			add("pattern", k.Log.Pattern)
		}
		return rekey.CheckLog, t.Node
	}
	return "", nil
}
