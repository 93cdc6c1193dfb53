package engine_test

// The in-memory systems the engine tests rotate against: a .env target, a
// database an Applier changes, services, checks, and the rows of a data key.
// Each records what was done to it, and outlives the simulated crashes.

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/rekeyhq/rekey"
)

// ecCrash is the panic value of a simulated crash.
type ecCrash struct{ point string }

// ecTarget is an in-memory .env. It outlives the simulated crashes.
type ecTarget struct {
	mu   sync.Mutex
	vals map[string]string
	// lie makes Read report a wrong value for every key once the target has
	// been written to (so the drift check before a rotation passes and its
	// verification fails).
	lie, written bool
}

// arm makes the target lie after the next write, or stop lying.
func (m *ecTarget) arm(lie bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lie, m.written = lie, false
}

func (m *ecTarget) Name() string { return "app (memory)" }

func (m *ecTarget) Read(_ context.Context, keys []string) (map[string]rekey.Value, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]rekey.Value{}
	for _, k := range keys {
		if v, ok := m.vals[k]; ok {
			if m.lie && m.written {
				v += "-not-what-was-written"
			}
			out[k] = rekey.NewValueString(v)
		}
	}
	return out, nil
}

func (m *ecTarget) Write(_ context.Context, set map[string]rekey.Value, del []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.written = true
	for k, v := range set {
		m.vals[k] = v.RevealString()
	}
	for _, k := range del {
		delete(m.vals, k)
	}
	return nil
}

func (m *ecTarget) get(k string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.vals[k]
}

func (m *ecTarget) snapshot() map[string]string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.vals)
}

// ecDatabase is the backing system of a password secret: the value it
// accepts. Apply and Revert are idempotent, as the Applier contract asks.
type ecDatabase struct {
	mu       sync.Mutex
	accepted map[string]string
}

func (d *ecDatabase) Apply(_ context.Context, _ string, s *rekey.Spec, pending, _ rekey.VersionValue) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.accepted[s.Name] = pending.Value.RevealString()
	return nil
}

func (d *ecDatabase) Revert(_ context.Context, _ string, s *rekey.Spec, _, current rekey.VersionValue) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.accepted[s.Name] = current.Value.RevealString()
	return nil
}

func (d *ecDatabase) get(k string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.accepted[k]
}

// fwServices records restarts, stops and starts with what the target held.
type fwServices struct {
	mu     sync.Mutex
	target *ecTarget
	log    []string
	// sees is what the running app was last (re)started with.
	sees map[string]string
	// failRestarts makes that many restarts fail.
	failRestarts int
}

func (s *fwServices) record(what string, keys []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := slices.Clone(keys)
	slices.Sort(k)
	s.log = append(s.log, what+" "+strings.Join(k, ","))
	if what != "stop" {
		s.sees = s.target.snapshot()
	}
}
func (s *fwServices) Restart(_ context.Context, keys []string) error {
	s.record("restart", keys)
	if s.failRestarts > 0 {
		s.failRestarts--
		return rekey.Errorf(rekey.CodeVerifyFailed, "restart of service api failed").WithHint("its output ended with: config invalid")
	}
	return nil
}
func (s *fwServices) Stop(_ context.Context, keys []string) error { s.record("stop", keys); return nil }
func (s *fwServices) Start(_ context.Context, keys []string) error {
	s.record("start", keys)
	return nil
}
func (s *fwServices) entries() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.log)
}

// fwChecks passes while ok says so about what the app was started with.
type fwChecks struct {
	svc  *fwServices
	ok   func(sees map[string]string) bool
	runs int
}

func (c *fwChecks) Run(context.Context) error {
	c.runs++
	c.svc.mu.Lock()
	sees := c.svc.sees
	c.svc.mu.Unlock()
	if c.ok(sees) {
		return nil
	}
	return rekey.Errorf(rekey.CodeVerifyFailed, "check login failed")
}

// fwRows is a table whose rows are "encrypted" under a key: each row holds
// the key value it was written with. Migrate moves rows from old to new.
type fwRows struct {
	mu      sync.Mutex
	rows    []string
	corrupt map[int]bool
	// during is called inside Migrate, to look at the world meanwhile.
	during func()
	fault  func(done int) // called after each row (crash injection)
	calls  int            // Migrate calls
}

func (d *fwRows) Migrate(_ context.Context, _ string, _ *rekey.Spec, pending, current rekey.VersionValue, _ string) error {
	d.calls++
	if d.during != nil {
		d.during()
	}
	failed := 0
	for i := range d.rows {
		d.mu.Lock()
		switch {
		case d.corrupt[i]:
			failed++
		case d.rows[i] == current.Value.RevealString():
			d.rows[i] = pending.Value.RevealString()
		}
		d.mu.Unlock()
		if d.fault != nil {
			d.fault(i)
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d rows open with neither key: %w", failed, rekey.ErrIncomplete)
	}
	return nil
}
