package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/notify"
)

// This file is the notification outbox's application side: Enqueue hands a
// message to the store's outbox (one item per channel its event goes to),
// in the caller's transaction; FlushOutbox delivers what is due, retrying
// with Backoff across runs, at least once: every channel shows the
// receiver the item's idempotency key (the webhook's
// X-Rekey-Idempotency-Key, PagerDuty's dedup_key, the email's Message-ID).

// GiveUpAfter is how long an item is retried before it is given up.
const GiveUpAfter = 7 * 24 * time.Hour

// never is the next attempt of an item given up or refused: not due again
// (the store keeps times as Unix nanoseconds, which end in 2262).
var never = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)

// backoff is the wait after each failed attempt (the first, the second...);
// after the last, every 24 hours.
var backoff = []time.Duration{time.Minute, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 6 * time.Hour}

// Backoff is the wait after the attempts-th failed attempt (1-based): 1m,
// 5m, 30m, 2h, 6h, then 24h.
func Backoff(attempts int) time.Duration {
	if attempts < 1 {
		attempts = 1
	}
	if attempts <= len(backoff) {
		return backoff[attempts-1]
	}
	return 24 * time.Hour
}

// NextAttempt is when to try item o again after its attempts-th attempt
// failed at now, or giveUp when it was created GiveUpAfter or more ago.
func NextAttempt(o rekey.OutboxItem, attempts int, now time.Time) (next time.Time, giveUp bool) {
	if now.Sub(o.Created) >= GiveUpAfter {
		return never, true
	}
	return now.Add(Backoff(attempts)), false
}

// GivenUp reports whether o is pending but will not be tried again (given
// up after GiveUpAfter, or refused: its body holds a value).
func GivenUp(o rekey.OutboxItem) bool { return o.Pending() && !o.NextAttempt.Before(never) }

// IdempotencyKey is the stable key of a notification of event about subject
// (a rotation, an incident, a secret on a day) in env, to channel: the same
// event enqueued again has the same key, so the outbox keeps it once and a
// receiver can tell a redelivery.
func IdempotencyKey(env, event, subject, channel string) string {
	h := sha256.Sum256([]byte(env + "\x00" + event + "\x00" + subject + "\x00" + channel))
	return "rekey-" + hex.EncodeToString(h[:16])
}

// Enqueue records m in the outbox in tx: one item per channel of cfg that
// event goes to (none when rekey.yaml has no notify: section). Call it
// inside the store transaction that records the event, so a notification
// exists if and only if its event does. m.IdempotencyKey, when set, names
// the subject (a rotation id, "NAME 2026-05-01"), else m.IncidentID does;
// each item's key is IdempotencyKey(env, event, subject, channel), so
// enqueueing the same event again adds nothing. m.Environment, m.Time and
// m.Severity default to the session's environment, now and info. Nothing
// is sent here: FlushOutbox delivers.
//
// The incident code calls it from its notify step:
//
//	err := st.Update(ctx, func(tx rekey.Tx) error {
//		return s.Enqueue(tx, cfg, rekey.EventIncidentOpened, notify.Message{
//			Severity: notify.SeverityCritical, Title: ..., Text: ..., Environment: inc.Env,
//			Secrets: refs, Command: "rekey incident status " + inc.ID, IncidentID: inc.ID})
//	})
func (s *Session) Enqueue(tx rekey.Tx, cfg *config.Config, event string, m notify.Message) error {
	subject := m.IdempotencyKey
	if subject == "" {
		subject = m.IncidentID
	}
	if subject == "" {
		return rekey.Errorf(rekey.CodeInternal, "notify: a %s message names no subject (idempotency key or incident)", event)
	}
	m.Event = event
	if m.Severity == "" {
		m.Severity = notify.SeverityInfo
	}
	if m.Time.IsZero() {
		m.Time = s.Now().UTC().Truncate(time.Second)
	}
	if m.Environment == "" && s.Opts.EnvName != "" {
		m.Environment = s.Opts.EnvName
	}
	for _, ch := range cfg.Notify.ChannelsFor(event) {
		m.IdempotencyKey = IdempotencyKey(m.Environment, event, subject, ch)
		body, err := m.Encode()
		if err != nil {
			return err
		}
		if _, err := tx.Enqueue(rekey.OutboxItem{Created: s.Now(), Env: m.Environment, Channel: ch, Event: event,
			IdempotencyKey: m.IdempotencyKey, Body: body}); err != nil {
			return err
		}
	}
	return nil
}

// Flushed is what one FlushOutbox did.
type Flushed struct {
	Items     []FlushedItem
	Delivered int
	Failed    int // failed this time (refused and given up included)
	Pending   int // still pending after it (failed or not due yet; given up excluded)
	GivenUp   int // pending items that will not be tried again
}

// FlushedItem is one delivery attempt: the item after it, where it went,
// the destination's answer or why it failed (redacted, bounded).
type FlushedItem struct {
	Item   rekey.OutboxItem
	Where  string
	Status string
	Err    string
}

// FlushOutbox delivers the pending items that are due now, oldest first
// (see Flush); it returns how many were delivered and how many failed.
func (s *Session) FlushOutbox(ctx context.Context) (delivered, failed int, err error) {
	f, err := s.Flush(ctx)
	if f != nil {
		delivered, failed = f.Delivered, f.Failed
	}
	return delivered, failed, err
}

// Flush delivers the pending outbox items due now, oldest first. Each body
// is checked against every stored version of every secret first
// (notify.Message.Validate): one that holds a value is refused for good and
// never sent. Each delivery is bounded by its channel's timeout; its
// outcome is recorded (MarkAttempt, with an audit record notify.deliver in
// the same transaction): delivered, or the redacted error and the next
// attempt (Backoff), or given up after GiveUpAfter. A failed delivery is
// not an error of Flush; a store error is. rekey.yaml must be approved: it
// says where the messages and the channels' secrets go.
func (s *Session) Flush(ctx context.Context) (*Flushed, error) {
	cfg, st, err := s.OpenStore(ctx)
	if err != nil {
		return nil, err
	}
	if !s.approved(cfg) {
		return nil, rekey.Errorf(rekey.CodeUnsafe, "%s is not approved on this machine: it says where notifications and the channels' secrets go", config.FileName).
			WithHint("review it, then run `rekey config trust`")
	}
	var due []rekey.OutboxItem
	if err := st.View(ctx, func(tx rekey.Tx) error {
		due, err = tx.Outbox(rekey.OutboxFilter{Pending: true, DueBy: s.Now()})
		return err
	}); err != nil {
		return nil, err
	}
	out := &Flushed{}
	if len(due) > 0 {
		if err := s.deliverAll(ctx, cfg, st, due, out); err != nil {
			return out, err
		}
	}
	return out, s.countPending(ctx, st, out)
}

// countPending fills the counts of what is still pending.
func (s *Session) countPending(ctx context.Context, st rekey.Store, out *Flushed) error {
	return st.View(ctx, func(tx rekey.Tx) error {
		items, err := tx.Outbox(rekey.OutboxFilter{Pending: true})
		for _, o := range items {
			if GivenUp(o) {
				out.GivenUp++
			} else {
				out.Pending++
			}
		}
		return err
	})
}

// deliverAll delivers items, grouped by environment (a channel's secrets
// are those of the environment the event happened in).
func (s *Session) deliverAll(ctx context.Context, cfg *config.Config, st rekey.Store, items []rekey.OutboxItem, out *Flushed) error {
	var stored []rekey.Value
	defer func() {
		for _, v := range stored {
			v.Wipe()
		}
	}()
	if err := EachVersion(ctx, st, func(_ rekey.Version, val rekey.Value) { stored = append(stored, val) }); err != nil {
		return err
	}
	var envs []string
	for _, o := range items {
		if !slices.Contains(envs, o.Env) {
			envs = append(envs, o.Env)
		}
	}
	for _, env := range envs {
		vals, err := ResolveValues(ctx, st, cfg, env, Current, func([]string) rekey.AuditEntry {
			return rekey.AuditEntry{Actor: s.Actor(), Action: "notify.flush", Env: env, Outcome: "started",
				Detail: "the channels' secrets read to deliver notifications"}
		})
		if err != nil {
			return err
		}
		for _, o := range items {
			if o.Env != env {
				continue
			}
			fi := s.deliverOne(ctx, cfg, o, stored, vals)
			if err := s.recordAttempt(ctx, st, &fi); err != nil {
				vals.Wipe()
				return err
			}
			out.Items = append(out.Items, fi)
			if fi.Err == "" {
				out.Delivered++
			} else {
				out.Failed++
			}
		}
		vals.Wipe()
	}
	return nil
}

// deliverOne checks and sends one item; fi.Err says why it failed, and a
// refusal is marked (NextAttempt never) so it is not tried again.
func (s *Session) deliverOne(ctx context.Context, cfg *config.Config, o rekey.OutboxItem, stored []rekey.Value, vals *Values) (fi FlushedItem) {
	fi.Item = o
	var m notify.Message
	if err := json.Unmarshal(o.Body, &m); err != nil {
		return refused(fi, "its body is not a notification message")
	}
	m.IdempotencyKey = o.IdempotencyKey // what the receiver deduplicates by
	if err := m.Validate(stored); err != nil {
		return refused(fi, err.Error())
	}
	ch, ok := cfg.Notify.Channel(o.Channel)
	if !ok {
		fi.Err = fmt.Sprintf("channel %s is not in %s any more", o.Channel, config.FileName)
		return fi
	}
	c, err := s.NotifyChannel(cfg, *ch, vals.Resolve, vals.Redact)
	if err != nil {
		fi.Err = vals.Redact(err.Error())
		return fi
	}
	fi.Where = c.Describe()
	timeout := ch.Timeout
	if timeout <= 0 {
		timeout = notify.DefaultTimeout
	}
	dctx, cancel := context.WithTimeout(ctx, timeout+5*time.Second)
	defer cancel()
	status, err := c.Deliver(dctx, m)
	fi.Status = vals.Redact(status)
	if err != nil {
		fi.Err = vals.Redact(err.Error())
	}
	return fi
}

// refused marks fi as refused for good.
func refused(fi FlushedItem, why string) FlushedItem {
	fi.Err = "refused, never sent: " + why
	fi.Item.NextAttempt = never
	return fi
}

// recordAttempt records fi's attempt and its audit record in one
// transaction, and updates fi.Item to match.
func (s *Session) recordAttempt(ctx context.Context, st rekey.Store, fi *FlushedItem) error {
	o, now := &fi.Item, s.Now()
	attempts := o.Attempts + 1
	var delivered, next time.Time
	outcome, detail := "ok", fmt.Sprintf("%s to %s (%s: %s); key %s", o.Event, o.Channel, fi.Where, fi.Status, o.IdempotencyKey)
	switch {
	case fi.Err == "":
		delivered = now
	case strings.HasPrefix(fi.Err, "refused"):
		next, outcome = never, "refused"
	default:
		var giveUp bool
		next, giveUp = NextAttempt(*o, attempts, now)
		outcome = "failed"
		if giveUp {
			outcome = "given-up"
			fi.Err = fmt.Sprintf("given up after %s of attempts: %s", rekey.FormatDuration(GiveUpAfter), fi.Err)
		}
	}
	fi.Err = rekey.BoundError(fi.Err)
	if fi.Err != "" {
		detail = fmt.Sprintf("%s to %s; key %s: %s", o.Event, o.Channel, o.IdempotencyKey, fi.Err)
	}
	err := st.Update(ctx, func(tx rekey.Tx) error {
		if err := tx.MarkAttempt(o.ID, delivered, fi.Err, next); err != nil {
			return err
		}
		_, err := tx.Audit(rekey.AuditEntry{Actor: s.Actor(), Action: "notify.deliver", Env: o.Env, Outcome: outcome, Detail: rekey.BoundError(detail)})
		return err
	})
	if err != nil {
		return err
	}
	o.Attempts, o.Delivered, o.LastError, o.NextAttempt = attempts, delivered, fi.Err, next
	return nil
}

// OutboxItems lists the outbox: the pending items (failed, not due yet or
// given up), with the delivered ones too when all.
func (s *Session) OutboxItems(ctx context.Context, all bool) ([]rekey.OutboxItem, error) {
	_, st, err := s.OpenStore(ctx)
	if err != nil {
		return nil, err
	}
	var items []rekey.OutboxItem
	err = st.View(ctx, func(tx rekey.Tx) error {
		items, err = tx.Outbox(rekey.OutboxFilter{Pending: !all})
		return err
	})
	return items, err
}

// FlushAfter is the best-effort flush at the end of a command that may have
// enqueued (rotate, recover, rollback, remind): only when the command
// opened the store; a failure is a warning, never the command's error.
func (s *Session) FlushAfter(ctx context.Context) *Flushed {
	if s.store == nil || s.cfg == nil || len(s.cfg.Notify.Channels) == 0 {
		return nil
	}
	if ctx.Err() != nil {
		return nil // interrupted: a later command delivers
	}
	f, err := s.Flush(ctx)
	if err != nil && !errors.Is(err, context.Canceled) {
		s.warnf("delivering notifications: %v (they stay in the outbox: `rekey notify flush` retries)", err)
	}
	return f
}
