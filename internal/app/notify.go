package app

import (
	"context"
	"path/filepath"
	"strings"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/notify"
)

// NotifySent is what `rekey notify test` reports: the channel, where it
// delivered (no secret: "webhook https://host/…") and the answer ("200").
type NotifySent struct {
	Channel string
	Where   string
	Status  string
}

// NotifyTest sends a test message to the channel named name in rekey.yaml,
// directly (no outbox). The read of the channel's secrets is audited before
// anything is sent (action notify.test, outcome started), and so is the
// outcome; the message is checked against every stored version of every
// secret first (Message.Validate). A failed delivery is a CodeVerifyFailed
// error saying why.
func (s *Session) NotifyTest(ctx context.Context, name string) (NotifySent, error) {
	out := NotifySent{Channel: name}
	cfg, st, env, err := s.openEnv(ctx)
	if err != nil {
		return out, err
	}
	ch, err := notifyChannel(cfg, name)
	if err != nil {
		return out, err
	}
	detail := "channel " + ch.Name + " (" + ch.Type + ")"
	if secrets := ch.Secrets(); len(secrets) > 0 {
		detail += "; secrets: " + strings.Join(secrets, ",")
	}
	vals, err := ResolveValues(ctx, st, cfg, env.Name, Current, func([]string) rekey.AuditEntry {
		return rekey.AuditEntry{Actor: s.Actor(), Action: "notify.test", Env: env.Name, Outcome: "started", Detail: detail}
	})
	if err != nil {
		return out, err
	}
	defer vals.Wipe()
	c, err := s.NotifyChannel(cfg, *ch, vals.Resolve, vals.Redact)
	if err != nil {
		return out, err
	}
	out.Where = c.Describe()
	msg := notify.TestMessage(ch.Name, env.Name, s.Actor(), s.Now())
	if err := validateMessage(ctx, st, msg); err != nil {
		return out, err
	}
	status, sendErr := c.Deliver(ctx, msg)
	out.Status = status
	outcome, result := "ok", detail+"; "+out.Where+": "+status
	if sendErr != nil {
		outcome, result = "failed", detail+"; "+vals.Redact(sendErr.Error())
	}
	if err := s.Audit(ctx, st, rekey.AuditEntry{Action: "notify.test", Env: env.Name, Outcome: outcome, Detail: result}); err != nil {
		return out, err
	}
	if sendErr != nil {
		return out, withHint(sendErr, "fix the channel under notify.channels."+ch.Name+" in rekey.yaml (or the endpoint), then run `rekey notify test "+ch.Name+"` again")
	}
	return out, nil
}

// notifyChannel is the channel named name, or a not-found error listing
// the channels.
func notifyChannel(cfg *config.Config, name string) (*config.NotifyChannel, error) {
	if ch, ok := cfg.Notify.Channel(name); ok {
		return ch, nil
	}
	names := cfg.Notify.ChannelNames()
	if len(names) == 0 {
		return nil, rekey.Errorf(rekey.CodeNotFound, "no notification channel %q: rekey.yaml has no notify: section", name).
			WithHint("add it under notify: channels: in rekey.yaml, e.g. %s: {type: webhook, url: \"https://ops.example.com/rekey\", secret: WEBHOOK_SIGNING_SECRET}", name)
	}
	return nil, rekey.Errorf(rekey.CodeNotFound, "no notification channel %q in %s", name, config.FileName).
		WithHint("channels: %s", strings.Join(names, ", "))
}

// validateMessage refuses a message that holds any stored version of any
// secret (the canary of every notification).
func validateMessage(ctx context.Context, st rekey.Store, m notify.Message) error {
	var all []rekey.Value
	err := EachVersion(ctx, st, func(_ rekey.Version, val rekey.Value) { all = append(all, val) })
	defer func() {
		for _, v := range all {
			v.Wipe()
		}
	}()
	if err != nil {
		return err
	}
	return m.Validate(all)
}

// NotifyChannel builds the channel ch of cfg, with the values of the
// secrets it names from resolve (a secret without a value is an error
// saying how to set it) and redact applied to whatever an endpoint answers.
func (s *Session) NotifyChannel(cfg *config.Config, ch config.NotifyChannel, resolve func(string) (rekey.Value, error), redact func(string) string) (notify.Deliverer, error) {
	b := notify.Base{ChannelName: ch.Name, Timeout: ch.Timeout, Redact: redact, Now: s.Now}
	secret := func(key, name string) (rekey.Value, error) {
		v, err := resolve(name)
		if err != nil || v.IsZero() {
			return rekey.Value{}, rekey.Errorf(rekey.CodeNotFound, "channel %s: %s names %s, which has no value", ch.Name, key, name).
				WithHint("set it with `rekey set %s` (or rotate it, for a generated secret)", name)
		}
		return v, nil
	}
	switch ch.Type {
	case config.ChannelWebhook:
		url := ch.URL
		if ch.URLSecret != "" {
			v, err := secret("url_secret", ch.URLSecret)
			if err != nil {
				return nil, err
			}
			url = v.RevealString()
			b.Redact = hide(redact, v)
		}
		key, err := secret("secret", ch.Secret)
		if err != nil {
			return nil, err
		}
		return notify.NewWebhook(b, url, key)
	case config.ChannelSlack:
		v, err := secret("url_secret", ch.URLSecret)
		if err != nil {
			return nil, err
		}
		return notify.NewSlack(b, v)
	case config.ChannelPagerDuty:
		key, err := secret("routing_key_secret", ch.RoutingKeySecret)
		if err != nil {
			return nil, err
		}
		return notify.NewPagerDuty(b, ch.URL, key)
	case config.ChannelEmail:
		o := notify.EmailOptions{Addr: ch.SMTP, TLS: ch.TLS, CAFile: ch.CAFile, Username: ch.Username, From: ch.From, To: ch.To}
		if ch.PasswordSecret != "" {
			v, err := secret("password_secret", ch.PasswordSecret)
			if err != nil {
				return nil, err
			}
			o.Password = v
		}
		return notify.NewEmail(b, o)
	case config.ChannelCommand:
		argv := append([]string(nil), ch.Command...)
		if strings.ContainsRune(argv[0], '/') && !filepath.IsAbs(argv[0]) {
			argv[0] = filepath.Join(cfg.Dir, argv[0])
		}
		return notify.NewCommand(b, argv, cfg.Dir, s.Environ())
	}
	return nil, rekey.Errorf(rekey.CodeInvalid, "channel %s has unknown type %q", ch.Name, ch.Type)
}

// hide is redact that also hides v.
func hide(redact func(string) string, v rekey.Value) func(string) string {
	return func(t string) string {
		t = strings.ReplaceAll(t, v.RevealString(), rekey.Redacted)
		if redact != nil {
			t = redact(t)
		}
		return t
	}
}

// withHint gives err a hint when it has none.
func withHint(err error, hint string) error {
	if rekey.ErrorHint(err) != "" {
		return err
	}
	return &rekey.Error{Code: rekey.ErrorCode(err), Err: err, Hint: hint}
}
