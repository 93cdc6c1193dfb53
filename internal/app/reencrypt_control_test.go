package app

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The runner's side of the control file, without a database: a control of
// another pid is ignored, a pace above the ceiling is capped in what the
// run does and reports, a symbolic link is not followed, each change is
// audited and narrated once.
func TestRunControl(t *testing.T) {
	dir := t.TempDir()
	var audited, said []string
	rc := &runControl{ctlPath: filepath.Join(dir, "reencrypt-control-production"), snapPath: filepath.Join(dir, "reencrypt-status-production"),
		audit:   func(_ ReencryptControl, what string) { audited = append(audited, what) },
		say:     func(format string, args ...any) { said = append(said, format) },
		endLine: func() {},
		snap:    ReencryptSnapshot{PID: os.Getpid(), Secret: "ENCRYPTION_KEY", Ceiling: 500}}
	put := func(c ReencryptControl) {
		t.Helper()
		b, _ := json.Marshal(c)
		if err := writeJSON(rc.ctlPath, json.RawMessage(b)); err != nil {
			t.Fatal(err)
		}
	}
	snap := func() ReencryptSnapshot {
		t.Helper()
		s, err := readJSON[ReencryptSnapshot](rc.snapPath)
		if err != nil || s == nil {
			t.Fatalf("snapshot: %v", err)
		}
		return *s
	}
	if paused, pace := rc.control(t.Context()); paused || pace != 0 {
		t.Fatalf("no control file: want to go on at the configured pace, got %v %d", paused, pace)
	}
	put(ReencryptControl{PID: os.Getpid() + 1, Paused: true, By: "other", At: time.Now()})
	if paused, _ := rc.control(t.Context()); paused {
		t.Fatal("a control of another pid paused the run")
	}
	at := time.Now().Add(time.Second)
	put(ReencryptControl{PID: os.Getpid(), Pace: 1_000_000, By: strings.Repeat("m", 200) + "\x1b[2J", At: at})
	paused, pace := rc.control(t.Context())
	if s := snap(); paused || s.Pace != 500 || s.PaceInForce() != 500 || !s.At.Equal(at) || len(s.By) != 64 {
		t.Fatalf("a pace of 1,000,000 with a ceiling of 500: want 500 in force and the asker cut to 64, got %d %+v", pace, s)
	}
	rc.control(t.Context()) // unchanged: not audited again
	if len(audited) != 1 || len(said) != 1 || !strings.Contains(audited[0], "in force: 500") {
		t.Fatalf("audited %q, said %q", audited, said)
	}
	// A symbolic link in place of the control file is not followed.
	target := filepath.Join(dir, "elsewhere")
	b, _ := json.Marshal(ReencryptControl{PID: os.Getpid(), Paused: true, At: time.Now()})
	if err := os.WriteFile(target, b, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(rc.ctlPath)
	if err := os.Symlink(target, rc.ctlPath); err != nil {
		t.Fatal(err)
	}
	if paused, _ := rc.control(t.Context()); paused {
		t.Fatal("a control file that is a symbolic link paused the run")
	}
	rc.close()
	if _, err := os.Stat(rc.snapPath); !os.IsNotExist(err) {
		t.Fatal("the snapshot outlived the run")
	}
}
