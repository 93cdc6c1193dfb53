package config

import (
	"time"

	"gopkg.in/yaml.v3"

	"github.com/rekeyhq/rekey"
)

// This file writes the services: and checks: sections (see Marshal).

// servicesAndChecks adds the services: and checks: sections of c to root.
func (m *marshaler) servicesAndChecks(c *Config, root *mapNode) {
	if n := servicesNode(c.Services); n != nil {
		root.add("services", n)
	}
	if n := checksNode(c.Checks); n != nil {
		root.add("checks", n)
	}
}

// servicesNode returns the services: mapping, or nil when there is none.
func servicesNode(svcs []rekey.Service) *mapNode {
	if len(svcs) == 0 {
		return nil
	}
	sm := newMap()
	for _, s := range svcs {
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
		if len(s.Environments) > 0 {
			n.add("environments", flowList(s.Environments))
		}
		sm.add(s.Name, n)
	}
	return sm
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

// checksNode returns the checks: mapping, or nil when there is none.
func checksNode(checks []rekey.Check) *mapNode {
	if len(checks) == 0 {
		return nil
	}
	cm := newMap()
	for _, k := range checks {
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
		if len(k.Environments) > 0 {
			n.add("environments", flowList(k.Environments))
		}
		cm.add(k.Name, n)
	}
	return cm
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
	}
	return "", nil
}
