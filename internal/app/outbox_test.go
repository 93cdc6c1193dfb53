package app

import (
	"testing"
	"time"

	"github.com/rekeyhq/rekey"
)

// TestOutboxBackoff: the retry schedule with a fixed clock: 1m, 5m, 30m,
// 2h, 6h, then every 24h; given up 7 days after the item was recorded.
func TestOutboxBackoff(t *testing.T) {
	t0 := time.Date(2030, 1, 15, 9, 0, 0, 0, time.UTC)
	o := rekey.OutboxItem{Created: t0}
	want := []time.Duration{time.Minute, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 6 * time.Hour, 24 * time.Hour, 24 * time.Hour}
	now := t0
	for i, w := range want {
		next, giveUp := NextAttempt(o, i+1, now)
		if giveUp || next.Sub(now) != w {
			t.Fatalf("attempt %d at %s: next %s (give up %v), want +%s", i+1, now, next, giveUp, w)
		}
		now = next
	}
	if _, giveUp := NextAttempt(o, 9, t0.Add(GiveUpAfter-time.Second)); giveUp {
		t.Error("given up before 7 days")
	}
	next, giveUp := NextAttempt(o, 9, t0.Add(GiveUpAfter))
	if !giveUp || !GivenUp(rekey.OutboxItem{NextAttempt: next}) {
		t.Errorf("not given up after 7 days: %s %v", next, giveUp)
	}
	if GivenUp(rekey.OutboxItem{NextAttempt: t0.Add(time.Minute)}) || GivenUp(rekey.OutboxItem{NextAttempt: never, Delivered: t0}) {
		t.Error("GivenUp of a pending or delivered item")
	}
	if IdempotencyKey("p", "overdue", "JWT 2030-01-15", "hook") != IdempotencyKey("p", "overdue", "JWT 2030-01-15", "hook") ||
		IdempotencyKey("p", "overdue", "JWT 2030-01-15", "hook") == IdempotencyKey("p", "overdue", "JWT 2030-01-16", "hook") {
		t.Error("idempotency key not stable per subject")
	}
}
