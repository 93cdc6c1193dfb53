package config

import (
	"net"
	"net/mail"
	"net/url"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/rekeyhq/rekey"
)

// This file decodes the notify: section: the channels notifications go to,
// the runbook's contacts (roles → channels) and which events go where.
// Secrets a channel needs (a signing secret, a Slack URL, a PagerDuty
// routing key, an SMTP password) are named, never written here.
//
//	notify:
//	  channels:
//	    ops-hook:  {type: webhook, url: "https://ops.example.com/rekey", secret: WEBHOOK_SIGNING_SECRET}
//	    chat:      {type: slack, url_secret: SLACK_WEBHOOK_URL}
//	    pager:     {type: pagerduty, routing_key_secret: PAGERDUTY_ROUTING_KEY}
//	    mail:
//	      type: email
//	      smtp: smtp.example.com:587          # STARTTLS required (tls: starttls|implicit|none)
//	      username: rekey
//	      password_secret: SMTP_PASSWORD
//	      from: rekey@example.com
//	      to: [security@example.com]
//	      ca_file: ./smtp-ca.pem               # optional: the CAs to trust
//	    script:    {type: command, command: [./bin/notify], timeout: 30s}
//	  contacts:                                # the runbook's roles
//	    security: [mail, chat]
//	    oncall: [pager]
//	    dba: [mail]
//	  events:                                  # default: every event to every channel
//	    incident.opened: [security, oncall]
//	    due.soon: [chat]

// The channel types.
const (
	ChannelWebhook   = "webhook"
	ChannelSlack     = "slack"
	ChannelPagerDuty = "pagerduty"
	ChannelEmail     = "email"
	ChannelCommand   = "command"
)

// ChannelTypes lists the valid channel types.
var ChannelTypes = []string{ChannelWebhook, ChannelSlack, ChannelPagerDuty, ChannelEmail, ChannelCommand}

// NotifyEvents lists the events a route may name (notify.Events).
var NotifyEvents = []string{
	"incident.opened", "rotation.failed", "rotation.rolled_back", "rotation.scheduled",
	"due.soon", "overdue", "reencrypt.incomplete", "test",
}

// EmailTLSModes are the tls: values of an email channel.
var EmailTLSModes = []string{"starttls", "implicit", "none"}

// Notify is the notify: section.
type Notify struct {
	Channels []NotifyChannel // file order
	Contacts []Contact       // file order
	Events   []EventRoute    // file order; an event not listed goes to every channel
}

// NotifyChannel is one channel. Which fields are set depends on Type.
type NotifyChannel struct {
	Name string
	Type string
	// webhook, pagerduty: the URL (pagerduty: "" is PagerDuty's own);
	// webhook, slack: UrlSecret names the secret that holds the URL.
	URL       string
	URLSecret string
	// webhook: the secret that signs deliveries.
	Secret string
	// pagerduty: the secret that holds the routing (integration) key.
	RoutingKeySecret string
	// email.
	SMTP           string // host:port
	TLS            string // "starttls" (default), "implicit", "none"
	Username       string
	PasswordSecret string
	From           string
	To             []string
	CAFile         string // absolute
	// command: an argv, run without a shell.
	Command []string
	Timeout time.Duration // 0: the default
	Line    int
}

// Secrets are the names of the managed secrets the channel needs.
func (c NotifyChannel) Secrets() []string {
	var out []string
	for _, s := range []string{c.URLSecret, c.Secret, c.RoutingKeySecret, c.PasswordSecret} {
		if s != "" && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// Contact is one of the runbook's roles (security, oncall, dba) and the
// channels that reach it.
type Contact struct {
	Role     string
	Channels []string
	Line     int
}

// EventRoute sends an event to channels and contacts (by name).
type EventRoute struct {
	Event string
	To    []string
	Line  int
}

// Channel returns the channel named name.
func (n Notify) Channel(name string) (*NotifyChannel, bool) {
	for i := range n.Channels {
		if n.Channels[i].Name == name {
			return &n.Channels[i], true
		}
	}
	return nil, false
}

// ChannelNames lists the channels in file order.
func (n Notify) ChannelNames() []string {
	out := make([]string, len(n.Channels))
	for i, c := range n.Channels {
		out[i] = c.Name
	}
	return out
}

// ChannelsFor returns the channels event goes to, in order, each once: its
// route's channels and the channels of its route's contacts; every channel
// when no route names the event.
func (n Notify) ChannelsFor(event string) []string {
	i := slices.IndexFunc(n.Events, func(r EventRoute) bool { return r.Event == event })
	if i < 0 {
		return n.ChannelNames()
	}
	var out []string
	add := func(name string) {
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	for _, to := range n.Events[i].To {
		j := slices.IndexFunc(n.Contacts, func(c Contact) bool { return c.Role == to })
		if j < 0 {
			add(to)
			continue
		}
		for _, ch := range n.Contacts[j].Channels {
			add(ch)
		}
	}
	return out
}

// notifyDecl keeps the nodes the cross-reference checks report at.
type notifyDecl struct {
	n        Notify
	contacts [][]*yaml.Node // per contact, its channel name nodes
	roles    []*yaml.Node   // per contact, its key
	events   [][]*yaml.Node // per route, its name nodes
}

func (d *decoder) notify(v *yaml.Node) Notify {
	x := &notifyDecl{}
	d.decode(v, section{
		what: "notify",
		fields: []field{
			{"channels", func(k, v *yaml.Node) {
				d.someEntries(k, v, "channel", "channels of notify", "add one, e.g. ops: {type: webhook, url: \"https://ops.example.com/rekey\", secret: WEBHOOK_SECRET}", func(k, v *yaml.Node) {
					x.n.Channels = append(x.n.Channels, d.channel(k, v))
				})
			}},
			{"contacts", func(k, v *yaml.Node) { d.contacts(v, x) }},
			{"events", func(k, v *yaml.Node) { d.routes(v, x) }},
		},
		misplaced: map[string]string{"type": "a channel (notify.channels.NAME.type)", "url": "a channel (notify.channels.NAME.url)"},
	})
	d.notifyRefs(x)
	return x.n
}

func (d *decoder) contacts(v *yaml.Node, x *notifyDecl) {
	d.entries(v, "contact", "contacts of notify", func(k, v *yaml.Node) {
		if !targetName.MatchString(k.Value) {
			d.fail(k, "contact roles are letters, digits, - and _, such as security, oncall, dba", "invalid contact role %s", quote(k.Value))
		}
		names, nodes := d.nameList(v, "channels of contact "+quote(k.Value), "[mail, chat]")
		x.n.Contacts = append(x.n.Contacts, Contact{Role: k.Value, Channels: names, Line: k.Line})
		x.contacts = append(x.contacts, nodes)
		x.roles = append(x.roles, k)
	})
}

func (d *decoder) routes(v *yaml.Node, x *notifyDecl) {
	d.entries(v, "event", "events of notify", func(k, v *yaml.Node) {
		if !slices.Contains(NotifyEvents, k.Value) {
			d.fail(k, didYouMean(k.Value, NotifyEvents)+"events: "+strings.Join(NotifyEvents, ", "), "unknown event %s in notify events", quote(k.Value))
		}
		names, nodes := d.nameList(v, "channels of event "+quote(k.Value), "[security, oncall]")
		x.n.Events = append(x.n.Events, EventRoute{Event: k.Value, To: names, Line: k.Line})
		x.events = append(x.events, nodes)
	})
}

// nameList reads NAME or [NAME, ...].
func (d *decoder) nameList(v *yaml.Node, what, example string) ([]string, []*yaml.Node) {
	if v != nil && v.Kind == yaml.ScalarNode && !isNull(v) && v.Value != "" {
		return []string{v.Value}, []*yaml.Node{v}
	}
	if isNull(v) {
		d.fail(v, "list channel names, like "+example, "%s is empty", what)
		return nil, nil
	}
	names, nodes, _ := d.names(v, what, example, "list channel names, like "+example)
	return names, nodes
}

// notifyRefs checks that contacts name channels, and routes name channels
// or contacts; a role cannot share a channel's name.
func (d *decoder) notifyRefs(x *notifyDecl) {
	chans := x.n.ChannelNames()
	var roles []string
	for i, c := range x.n.Contacts {
		if slices.Contains(chans, c.Role) {
			d.fail(x.roles[i], "rename the contact or the channel", "contact %s has the name of a channel", quote(c.Role))
		}
		roles = append(roles, c.Role)
		for j, name := range c.Channels {
			if !slices.Contains(chans, name) {
				d.fail(x.contacts[i][j], didYouMean(name, chans)+"channels: "+listOf(chans), "contact %s: %s is not a channel of notify", quote(c.Role), quote(name))
			}
		}
	}
	all := append(slices.Clone(chans), roles...)
	for i, r := range x.n.Events {
		for j, name := range r.To {
			if !slices.Contains(all, name) {
				d.fail(x.events[i][j], didYouMean(name, all)+"channels and contacts: "+listOf(all), "event %s: %s is not a channel or contact of notify", r.Event, quote(name))
			}
		}
	}
}

// channelKeys are the keys each type takes, besides type and timeout.
var channelKeys = map[string][]string{
	ChannelWebhook:   {"url", "url_secret", "secret"},
	ChannelSlack:     {"url_secret"},
	ChannelPagerDuty: {"url", "routing_key_secret"},
	ChannelEmail:     {"smtp", "tls", "username", "password_secret", "from", "to", "ca_file"},
	ChannelCommand:   {"command"},
}

// channel decodes one channel: every key is read, then the keys are
// checked against its type.
func (d *decoder) channel(k, v *yaml.Node) NotifyChannel {
	c := NotifyChannel{Name: k.Value, Line: k.Line}
	if !targetName.MatchString(c.Name) {
		d.fail(k, "channel names are letters, digits, - and _, starting with a letter or digit", "invalid channel name %s", quote(c.Name))
	}
	what := label("channel", c.Name)
	secret := func(dst *string, key string) func(k, v *yaml.Node) {
		return func(k, v *yaml.Node) {
			if s, ok := d.text(v, key+" of "+what); ok && s != "" {
				*dst = s
				d.secretRef(v, s, key+" of "+what)
			}
		}
	}
	var typeNode *yaml.Node
	fields := []field{
		{"type", func(k, v *yaml.Node) {
			typeNode = v
			c.Type, _ = d.enum(v, "channel type", ChannelTypes)
		}},
		{"url", func(k, v *yaml.Node) { c.URL = d.httpURL(v, what) }},
		{"url_secret", secret(&c.URLSecret, "url_secret")},
		{"secret", secret(&c.Secret, "secret")},
		{"routing_key_secret", secret(&c.RoutingKeySecret, "routing_key_secret")},
		{"smtp", func(k, v *yaml.Node) {
			if s, ok := d.text(v, "smtp of "+what); ok {
				if h, p, err := net.SplitHostPort(s); err != nil || h == "" || p == "" {
					d.fail(v, "write host:port, e.g. smtp.example.com:587", "smtp of %s is not host:port", what)
				}
				c.SMTP = s
			}
		}},
		{"tls", func(k, v *yaml.Node) { c.TLS, _ = d.enum(v, "tls mode of "+what, EmailTLSModes) }},
		{"username", d.textTo(&c.Username, "username of "+what)},
		{"password_secret", secret(&c.PasswordSecret, "password_secret")},
		{"from", func(k, v *yaml.Node) { c.From = d.address(v, "from of "+what) }},
		{"to", func(k, v *yaml.Node) { c.To = d.addresses(v, "to of "+what) }},
		{"ca_file", func(k, v *yaml.Node) { d.path(v, "ca_file of "+what, &c.CAFile) }},
		{"command", func(k, v *yaml.Node) {
			cmd, ok := d.command(v, "command of "+what, false)
			if ok && cmd.Shell != "" {
				d.fail(v, "write an argv list such as [./bin/notify, --to, ops]: it runs without a shell", "command of %s must be a list", what)
				return
			}
			c.Command = cmd.Argv
		}},
		{"timeout", func(k, v *yaml.Node) { c.Timeout, _ = d.duration(v, "timeout of "+what) }},
	}
	seen, ok := d.decode(v, section{what: what, fields: fields})
	if !ok {
		return c
	}
	if typeNode == nil {
		d.missing(k, v, "add type: "+strings.Join(ChannelTypes, ", "), "%s has no type", what)
		return c
	}
	if c.Type != "" {
		d.channelRules(c, what, k, v, seen)
	}
	return c
}

// channelRules checks the keys of a channel against its type.
func (d *decoder) channelRules(c NotifyChannel, what string, k, v *yaml.Node, seen map[string]*yaml.Node) {
	allowed := channelKeys[c.Type]
	for _, key := range sortedKeys(seen) {
		if key == "type" || key == "timeout" || slices.Contains(allowed, key) {
			continue
		}
		hint := "a " + c.Type + " channel takes: " + strings.Join(append([]string{"type"}, append(allowed, "timeout")...), ", ")
		if c.Type == ChannelSlack && key == "url" {
			hint = "a Slack webhook URL is a credential: keep it in a managed secret and name it with url_secret"
		}
		d.fail(seen[key], hint, "%s is not used by %s (a %s channel)", key, what, c.Type)
	}
	need := func(key, hint string) {
		if seen[key] == nil {
			d.missing(k, v, hint, "%s (a %s channel) has no %s", what, c.Type, key)
		}
	}
	switch c.Type {
	case ChannelWebhook:
		if (seen["url"] == nil) == (seen["url_secret"] == nil) {
			d.missing(k, v, "give the receiver's address as url: https://..., or url_secret: NAME of a secret that holds it", "%s needs exactly one of url and url_secret", what)
		}
		need("secret", "name the managed secret that signs deliveries, e.g. secret: WEBHOOK_SIGNING_SECRET (add it under secrets with kind: generated)")
	case ChannelSlack:
		need("url_secret", "name the managed secret that holds the incoming webhook URL, e.g. url_secret: SLACK_WEBHOOK_URL (kind: manual; rekey set it)")
	case ChannelPagerDuty:
		need("routing_key_secret", "name the managed secret that holds the integration key, e.g. routing_key_secret: PAGERDUTY_ROUTING_KEY (kind: manual)")
	case ChannelEmail:
		need("smtp", "add smtp: host:port, e.g. smtp.example.com:587")
		need("from", "add from: rekey@example.com")
		need("to", "add to: [security@example.com]")
		if c.PasswordSecret != "" && c.Username == "" {
			d.fail(seen["password_secret"], "add username: the account the password belongs to", "%s has password_secret but no username", what)
		}
		if c.TLS == "none" && c.PasswordSecret != "" {
			d.fail(seen["tls"], "rekey never sends a password without TLS: use tls: starttls (the default) or implicit", "%s: tls: none with password_secret", what)
		}
	case ChannelCommand:
		need("command", "add command: [./bin/notify]: it gets the message as JSON on stdin")
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// httpURL reads an http(s) URL with a host. It is never quoted in an error.
func (d *decoder) httpURL(v *yaml.Node, what string) string {
	s, ok := d.text(v, "url of "+what)
	if !ok || s == "" {
		return ""
	}
	u, err := url.Parse(s)
	switch {
	case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "":
		d.fail(v, "write an http:// or https:// URL with a host, e.g. https://ops.example.com/rekey", "url of %s is not an http(s) URL", what)
	case u.User != nil:
		d.fail(v, "a URL with a password is a credential: keep the URL in a managed secret and name it with url_secret", "url of %s holds user info", what)
	}
	return s
}

// address reads one email address (as net/mail parses it).
func (d *decoder) address(v *yaml.Node, what string) string {
	s, ok := d.text(v, what)
	if !ok || s == "" {
		return ""
	}
	if _, err := mail.ParseAddress(s); err != nil || strings.ContainsAny(s, "\r\n") {
		d.fail(v, "write an address such as security@example.com", "%s is not an email address", what)
	}
	return s
}

// addresses reads a list of email addresses.
func (d *decoder) addresses(v *yaml.Node, what string) []string {
	names, nodes, ok := d.names(v, what, "[security@example.com]", "list at least one address, e.g. [security@example.com]")
	if !ok {
		return names
	}
	for i, n := range nodes {
		if _, err := mail.ParseAddress(names[i]); err != nil {
			d.fail(n, "write addresses such as security@example.com", "%s: %s is not an email address", what, quote(names[i]))
		}
	}
	return names
}

// notify adds the notify: section to root when it has anything.
func (m *marshaler) notify(n Notify, root *mapNode) {
	if len(n.Channels) == 0 && len(n.Contacts) == 0 && len(n.Events) == 0 {
		return
	}
	nm := newMap()
	addNamed(nm, "channels", n.Channels, m.channelNode)
	if len(n.Contacts) > 0 {
		cm := newMap()
		for _, c := range n.Contacts {
			cm.add(c.Role, flowList(c.Channels))
		}
		nm.add("contacts", cm)
	}
	if len(n.Events) > 0 {
		em := newMap()
		for _, r := range n.Events {
			em.add(r.Event, flowList(r.To))
		}
		nm.add("events", em)
	}
	root.add("notify", nm)
}

// channelNode is the entry of one channel in channels:.
func (m *marshaler) channelNode(c NotifyChannel) (string, *mapNode) {
	n := newMap()
	n.add("type", strNode(c.Type))
	addText(n, "url", c.URL)
	addText(n, "url_secret", c.URLSecret)
	addText(n, "secret", c.Secret)
	addText(n, "routing_key_secret", c.RoutingKeySecret)
	addText(n, "smtp", c.SMTP)
	addText(n, "tls", c.TLS)
	addText(n, "username", c.Username)
	addText(n, "password_secret", c.PasswordSecret)
	addText(n, "from", c.From)
	addList(n, "to", c.To)
	if c.CAFile != "" {
		n.add("ca_file", strNode(m.rel(c.CAFile)))
	}
	addList(n, "command", c.Command)
	if c.Timeout != 0 {
		n.add("timeout", strNode(rekey.FormatDuration(c.Timeout)))
	}
	return c.Name, n
}
