package app

// Control of a re-encryption running in another process (`rekey reencrypt
// pause|resume|pace N`). The running process holds the environment's lock
// and its store, so the channel is two small files beside the lock:
//
//   - reencrypt-control-ENV: written by the controlling command (temp file
//     and rename, mode 0600): {pid, paused, pace, by, at}. The runner stats
//     it before every batch (and every reencrypt.ControlPoll while paused)
//     and reads it when it changed. A file naming another pid (a run that
//     died, or a forgery for another) is ignored, and removed when a run
//     starts: a run resumed by `rekey recover` goes at the configured pace.
//   - reencrypt-status-ENV: written by the runner at most every
//     snapshotEvery and at once when a control takes effect: what `rekey
//     status` and the controlling commands print.
//
// Someone who can write the project's folder can pause a run (as they
// could delete the store), but a pace above rows_per_second is capped by
// the runner, and every string of either file is quoted when printed.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/rekeyhq/rekey"
	"github.com/rekeyhq/rekey/internal/config"
	"github.com/rekeyhq/rekey/internal/flock"
	"github.com/rekeyhq/rekey/internal/reencrypt"
	"github.com/rekeyhq/rekey/internal/safefile"
	"github.com/rekeyhq/rekey/internal/textsafe"
)

// ReencryptControl is the content of the control file.
type ReencryptControl struct {
	PID    int       `json:"pid"`    // the running process it is for
	Paused bool      `json:"paused"` // hold at the next batch boundary
	Pace   int       `json:"pace"`   // rows per second; 0: the configured pace
	By     string    `json:"by"`     // who asked (as they said: not authenticated)
	At     time.Time `json:"at"`
}

// ReencryptSnapshot is the running re-encryption as its process last wrote it.
type ReencryptSnapshot struct {
	PID           int     `json:"pid"`
	Secret        string  `json:"secret"`
	Table         string  `json:"table"`
	Done          int64   `json:"done"`
	Total         int64   `json:"total"`
	RowsPerSecond float64 `json:"rows_per_second"` // since the run started
	// Ceiling is rows_per_second of rekey.yaml (0: none); Pace the
	// operator's pace in force, capped at Ceiling (0: the configured pace).
	Ceiling int  `json:"ceiling"`
	Pace    int  `json:"pace"`
	Paused  bool `json:"paused"`
	// Adaptive is the adaptive pace's rate (rows/s; 0: pace full).
	Adaptive float64 `json:"adaptive_pace,omitempty"`
	// By and At are the last control that took effect (At zero: none).
	By string    `json:"by,omitempty"`
	At time.Time `json:"at,omitempty"`
	// ProbeP99 and ReplicaLag are the adaptive pace's measures (0: not
	// measured by this run).
	ProbeP99   time.Duration `json:"probe_p99_ns,omitempty"`
	ReplicaLag time.Duration `json:"replica_lag_ns,omitempty"`
	Polls      int64         `json:"polls"` // times the runner read its control
	Updated    time.Time     `json:"updated"`
}

// ETA is the time left at the rate so far (0: unknown or paused).
func (s *ReencryptSnapshot) ETA() time.Duration {
	if s.Paused || s.RowsPerSecond <= 0 || s.Total <= s.Done {
		return 0
	}
	return (time.Duration(float64(s.Total-s.Done)/s.RowsPerSecond) * time.Second).Round(time.Second)
}

// PaceInForce is the rows per second the run is held to (0: no limit):
// the lowest of the operator's pace, the adaptive pace and the ceiling.
func (s *ReencryptSnapshot) PaceInForce() int {
	n := 0
	for _, v := range []int{s.Pace, int(s.Adaptive), s.Ceiling} {
		if v > 0 && (n == 0 || v < n) {
			n = v
		}
	}
	return n
}

const (
	snapshotEvery  = time.Second
	controlMaxSize = 4096
)

func (s *Session) controlPath(cfg *config.Config, env string) string {
	return filepath.Join(filepath.Dir(cfg.Store.Path), "reencrypt-control-"+env)
}

func (s *Session) snapshotPath(cfg *config.Config, env string) string {
	return filepath.Join(filepath.Dir(cfg.Store.Path), "reencrypt-status-"+env)
}

// readSmall reads a small regular file without following a link; a
// missing file is (nil, nil).
func readSmall(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", filepath.Base(path))
	}
	return io.ReadAll(io.LimitReader(f, controlMaxSize))
}

func readJSON[T any](path string) (*T, error) {
	b, err := readSmall(path)
	if b == nil || err != nil {
		return nil, err
	}
	var v T
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return &v, nil
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return safefile.Replace(path, ".tmp-"+filepath.Base(path)+"-*", append(b, '\n'))
}

// runControl is the runner's side: reencrypt.Job.Control, the progress
// hook that keeps the snapshot, and the audit of the controls it applies.
type runControl struct {
	ctlPath, snapPath string
	audit             func(ReencryptControl, string)
	say               func(format string, args ...any) // a line of the run's narration
	endLine           func()                           // ends the progress line

	mu      sync.Mutex
	stamp   [2]int64 // the control file's mtime and size when last read
	applied ReencryptControl
	snap    ReencryptSnapshot
	written time.Time
}

// newRunControl starts the control of spec's run: a control file or a
// snapshot of another process (a dead run) is removed.
func (w *wiring) newRunControl(spec *rekey.Spec) *runControl {
	rc := &runControl{ctlPath: w.s.controlPath(w.cfg, w.env.Name), snapPath: w.s.snapshotPath(w.cfg, w.env.Name)}
	rc.snap = ReencryptSnapshot{PID: os.Getpid(), Secret: spec.Name, Ceiling: spec.Reencrypt.RowsPerSecond}
	if c, err := readJSON[ReencryptControl](rc.ctlPath); err != nil || c != nil && c.PID != os.Getpid() {
		os.Remove(rc.ctlPath)
	}
	os.Remove(rc.snapPath)
	rc.say, rc.endLine = w.say, func() {}
	rc.audit = func(c ReencryptControl, what string) {
		detail := fmt.Sprintf("%s at %d/%d rows, asked by %q at %s through the control file", what, rc.snap.Done, rc.snap.Total, c.By, c.At.UTC().Format(time.RFC3339))
		if err := w.e.Store.Update(context.Background(), func(tx rekey.Tx) error {
			_, err := tx.Audit(rekey.AuditEntry{Actor: w.e.Actor, Action: "reencrypt.control", Env: w.env.Name, Secret: spec.Name, Outcome: "ok", Detail: detail})
			return err
		}); err != nil {
			w.s.warnf("could not audit the re-encryption's %s: %v", what, err)
		}
	}
	return rc
}

// control implements reencrypt.Control.
func (rc *runControl) control(context.Context) (bool, int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.snap.Polls++
	c := rc.read()
	changed := c.Paused != rc.applied.Paused || c.Pace != rc.applied.Pace
	if changed || !c.At.Equal(rc.applied.At) {
		rc.applied = c
		rc.snap.Paused, rc.snap.Pace = c.Paused, reencrypt.EffectivePace(c.Pace, rc.snap.Ceiling)
		rc.snap.By, rc.snap.At = c.By, c.At
		if changed {
			what := describeControl(c, rc.snap.Ceiling)
			rc.endLine()
			rc.say("re-encryption of %s: %s, asked by %s, at %d/%d rows", rc.snap.Secret, what, textsafe.Quote(c.By), rc.snap.Done, rc.snap.Total)
			rc.audit(c, what)
		}
		rc.write(true)
	} else {
		rc.write(false)
	}
	return c.Paused, c.Pace
}

// read returns the control in force: the file's when it is this process's
// and readable, else the last one read (unchanged file) or none.
func (rc *runControl) read() ReencryptControl {
	fi, err := os.Lstat(rc.ctlPath)
	if err != nil || !fi.Mode().IsRegular() {
		rc.stamp = [2]int64{}
		return ReencryptControl{}
	}
	st := [2]int64{fi.ModTime().UnixNano(), fi.Size()}
	if st == rc.stamp {
		return rc.applied
	}
	rc.stamp = st
	c, err := readJSON[ReencryptControl](rc.ctlPath)
	if err != nil || c == nil || c.PID != os.Getpid() || c.Pace < 0 {
		return ReencryptControl{}
	}
	c.By = limitText(c.By, 64)
	return *c
}

func describeControl(c ReencryptControl, ceiling int) string {
	switch {
	case c.Paused:
		return "pause"
	case c.Pace > 0:
		return fmt.Sprintf("pace %d rows/s (in force: %d)", c.Pace, reencrypt.EffectivePace(c.Pace, ceiling))
	}
	return "resume at the configured pace"
}

// progress records p in the snapshot, then calls next.
func (rc *runControl) progress(next func(reencrypt.Progress)) func(reencrypt.Progress) {
	return func(p reencrypt.Progress) {
		rc.mu.Lock()
		defer rc.mu.Unlock() // the progress line and control's narration take turns
		rc.snap.Table, rc.snap.Done, rc.snap.Total, rc.snap.RowsPerSecond = p.Table, p.Done, p.Total, p.RowsPerSecond
		rc.snap.Adaptive, rc.snap.ProbeP99, rc.snap.ReplicaLag = p.Pace, p.ProbeP99, p.ReplicaLag
		rc.write(false)
		if next != nil {
			next(p)
		}
	}
}

// write writes the snapshot when now or snapshotEvery after the last time
// (rc.mu held). A failure is not the run's: status then shows less.
func (rc *runControl) write(now bool) {
	t := time.Now()
	if !now && t.Sub(rc.written) < snapshotEvery {
		return
	}
	rc.written = t
	rc.snap.Updated = t.UTC()
	_ = writeJSON(rc.snapPath, rc.snap)
}

// close removes the files of the run (it ended, whatever the outcome).
func (rc *runControl) close() {
	os.Remove(rc.snapPath)
	if c, _ := readJSON[ReencryptControl](rc.ctlPath); c == nil || c.PID == os.Getpid() {
		os.Remove(rc.ctlPath)
	}
}

// ControlAction is what `rekey reencrypt pause|resume|pace` asks.
type ControlAction struct {
	Pause, Resume bool
	Pace          int // with neither: rows per second, 0 the configured pace
}

// ControlOutcome is what the controlling command tells.
type ControlOutcome struct {
	Env     string
	PID     int
	Control ReencryptControl
	// Snapshot is the run's snapshot after it applied the control (Acked),
	// or the last one it wrote (nil: it is not re-encrypting yet).
	Snapshot *ReencryptSnapshot
	Acked    bool
}

// ackWait is how long a controlling command waits for the run to apply it.
const ackWait = 5 * time.Second

// ControlReencryption asks the re-encryption running in another process on
// the session's environment to pause, resume or change its pace, and waits
// (up to ackWait) for its snapshot to show it applied it.
func (s *Session) ControlReencryption(ctx context.Context, a ControlAction) (*ControlOutcome, error) {
	cfg, env, err := s.configEnv()
	if err != nil {
		return nil, err
	}
	out := &ControlOutcome{Env: env.Name}
	holder, held, err := flock.Held(s.lockPath(cfg, env.Name))
	if err != nil {
		return nil, err
	}
	if held {
		_, _ = fmt.Sscanf(holder, "pid %d", &out.PID)
	}
	if out.PID <= 0 {
		return nil, &rekey.Error{Code: rekey.CodeNotFound, Msg: fmt.Sprintf("no re-encryption is running in %s", env.Name),
			Hint: "`rekey status` shows one left open (then `rekey recover` resumes it); `rekey rotate NAME` or `rekey reencrypt` starts one"}
	}
	c := ReencryptControl{PID: out.PID}
	if old, err := readJSON[ReencryptControl](s.controlPath(cfg, env.Name)); err == nil && old != nil && old.PID == out.PID {
		c = *old
	}
	switch {
	case a.Pause:
		c.Paused = true
	case a.Resume:
		c.Paused = false
	default:
		c.Pace = a.Pace
	}
	c.By, c.At = limitText(s.Actor(), 64), s.Now().UTC()
	if err := writeJSON(s.controlPath(cfg, env.Name), c); err != nil {
		return nil, rekey.Wrap(rekey.CodeInternal, err, "write the re-encryption's control file")
	}
	out.Control = c
	deadline := time.Now().Add(ackWait)
	for {
		snap, _ := readJSON[ReencryptSnapshot](s.snapshotPath(cfg, env.Name))
		if snap != nil && snap.PID == out.PID {
			out.Snapshot = snap
			if out.Acked = snap.At.Equal(c.At); out.Acked {
				return out, nil
			}
		}
		if time.Now().After(deadline) {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return out, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// RunningReencryption is the snapshot of the re-encryption the lock's
// holder (pid) is running, or nil.
func (s *Session) runningReencryption(cfg *config.Config, env, holder string) *ReencryptSnapshot {
	var pid int
	if _, err := fmt.Sscanf(holder, "pid %d", &pid); err != nil || pid <= 0 {
		return nil
	}
	snap, err := readJSON[ReencryptSnapshot](s.snapshotPath(cfg, env))
	if err != nil || snap == nil || snap.PID != pid {
		return nil
	}
	return snap
}

func limitText(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n])
	}
	return s
}
