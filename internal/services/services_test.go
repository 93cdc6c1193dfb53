package services

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rekeyhq/rekey"
)

func sh(script string, timeout time.Duration) rekey.Command {
	return rekey.Command{Shell: script, Timeout: timeout}
}

func svc(name string, order int, restart rekey.Command, consumes ...string) rekey.Service {
	s := rekey.Service{Name: name, Order: order, Restart: restart, Consumes: consumes}
	if len(consumes) == 1 && consumes[0] == "all" {
		s.Consumes, s.ConsumesAll = nil, true
	}
	return s
}

func readLog(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "log"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestRestartAffectedInOrder checks that only the services consuming a
// changed secret (directly, through a derived value, or with consumes: all)
// restart, in order, in the project folder.
func TestRestartAffectedInOrder(t *testing.T) {
	dir := t.TempDir()
	log := func(name string) rekey.Command { return sh("echo "+name+" >> log", 10*time.Second) }
	svcs := []rekey.Service{
		svc("api", 0, log("api"), "JWT_SECRET", "DATABASE_URL"),
		svc("jwt-only", 0, log("jwt-only"), "JWT_SECRET"),
		svc("web", 5, log("web"), "all"),
		svc("db-first", -1, log("db-first"), "DATABASE_PASSWORD"),
		svc("none", 0, log("none"), "ENCRYPTION_KEY"),
	}
	o := Options{Dir: dir, Derived: []rekey.Derived{{Name: "DATABASE_URL", Template: rekey.MustParseTemplate("postgres://app:{{ DATABASE_PASSWORD | urlquery }}@db/app")}}}
	var seen []string
	o.OnResult = func(r Result) { seen = append(seen, r.Service) }
	res, err := Restart(context.Background(), svcs, []string{"DATABASE_PASSWORD"}, o)
	if err != nil {
		t.Fatal(err)
	}
	if got := readLog(t, dir); got != "db-first\napi\nweb" {
		t.Errorf("restarted:\n%s\nwant db-first, api, web", got)
	}
	if len(res) != 3 || strings.Join(seen, ",") != "db-first,api,web" {
		t.Errorf("results %+v, seen %v", res, seen)
	}
	for _, r := range res {
		if !r.OK || r.ExitCode != 0 || r.Action != ActionRestart || r.Tail != nil {
			t.Errorf("result %+v", r)
		}
	}

	// Nothing changed: nothing restarts.
	os.Remove(filepath.Join(dir, "log"))
	if res, err := Restart(context.Background(), svcs, nil, o); err != nil || len(res) != 0 || readLog(t, dir) != "" {
		t.Errorf("Restart with no change: %v %v %q", res, err, readLog(t, dir))
	}
	// A change to a secret only jwt-only, api and web consume.
	if _, err := Restart(context.Background(), svcs, []string{"JWT_SECRET"}, o); err != nil {
		t.Fatal(err)
	}
	if got := readLog(t, dir); got != "api\njwt-only\nweb" {
		t.Errorf("restarted:\n%s\nwant api, jwt-only, web", got)
	}
}

func TestStopThenStart(t *testing.T) {
	dir := t.TempDir()
	s := rekey.Service{Name: "legacy", Stop: sh("echo stop >> log", time.Minute), Start: sh("echo start >> log", time.Minute), ConsumesAll: true}
	res, err := RestartAll(context.Background(), []rekey.Service{s}, Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if got := readLog(t, dir); got != "stop\nstart" {
		t.Errorf("log %q", got)
	}
	if len(res) != 2 || res[0].Action != ActionStop || res[1].Action != ActionStart {
		t.Errorf("results %+v", res)
	}
}

// TestFailureTail checks that a failing restart stops the run, reports the
// last lines of its output redacted, and skips the later services.
func TestFailureTail(t *testing.T) {
	dir := t.TempDir()
	const secret = "s3cr3t-value-0123456789"
	script := `for i in $(seq 1 40); do echo "line $i"; done; echo "password=` + secret + `" >&2; echo "last words"; exit 3`
	svcs := []rekey.Service{
		svc("api", 0, sh(script, time.Minute), "all"),
		svc("web", 1, sh("echo web >> log", time.Minute), "all"),
	}
	redact := func(s string) string { return strings.ReplaceAll(s, secret, rekey.Redacted) }
	res, err := Restart(context.Background(), svcs, []string{"X"}, Options{Dir: dir, Redact: redact, TailLines: 4})
	if err == nil {
		t.Fatal("no error")
	}
	if rekey.ErrorCode(err) != rekey.CodeVerifyFailed {
		t.Errorf("code %v", rekey.ErrorCode(err))
	}
	if !strings.Contains(err.Error(), "restart of service api failed: exit status 3") {
		t.Errorf("error %q", err)
	}
	want := []string{"line 39", "line 40", "password=[REDACTED]", "last words"}
	if len(res) != 2 || strings.Join(res[0].Tail, "|") != strings.Join(want, "|") || res[0].ExitCode != 3 || res[0].OK {
		t.Fatalf("results %+v", res)
	}
	if res[1].Skipped == "" || res[1].OK || readLog(t, dir) != "" {
		t.Errorf("web was not skipped: %+v, log %q", res[1], readLog(t, dir))
	}
	hint := rekey.ErrorHint(err)
	if !strings.Contains(hint, "last words") || strings.Contains(hint, secret) || strings.Contains(err.Error(), secret) {
		t.Errorf("hint %q", hint)
	}
	j, _ := json.Marshal(res)
	if strings.Contains(string(j), secret) || !strings.Contains(string(j), `"duration_ms"`) {
		t.Errorf("json %s", j)
	}
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func waitDead(t *testing.T, pid int) {
	t.Helper()
	for i := 0; i < 200 && alive(pid); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if alive(pid) {
		syscallKill(pid)
		t.Errorf("process %d of the group is still alive", pid)
	}
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

// TestTimeoutKillsGroup checks that a command that outlives its timeout is
// killed with every process of its group, also one that ignores SIGTERM.
func TestTimeoutKillsGroup(t *testing.T) {
	for _, tc := range []struct{ name, script string }{
		{"term", `sleep 300 & echo $! > bg.pid; echo started; sleep 300`},
		{"ignores term", `trap "" TERM; sleep 300 & echo $! > bg.pid; echo started; wait`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			// The background sleep must have written its pid before the timeout.
			script := tc.script
			s := svc("api", 0, sh(script, 1500*time.Millisecond), "all")
			res, err := RestartAll(context.Background(), []rekey.Service{s}, Options{Dir: dir, KillGrace: 300 * time.Millisecond})
			if err == nil || len(res) != 1 {
				t.Fatalf("res %+v err %v", res, err)
			}
			r := res[0]
			if !r.TimedOut || r.OK || !strings.Contains(r.Err, "timed out after 1.5s: process group killed") {
				t.Errorf("result %+v", r)
			}
			if strings.Join(r.Tail, "|") != "started" {
				t.Errorf("tail %q", r.Tail)
			}
			waitDead(t, readPid(t, filepath.Join(dir, "bg.pid")))
		})
	}
}

func TestCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	o := Options{Dir: dir, KillGrace: 200 * time.Millisecond, OnResult: func(Result) {}}
	go func() {
		for i := 0; i < 200; i++ {
			if _, err := os.Stat(filepath.Join(dir, "bg.pid")); err == nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
	}()
	r := Run(ctx, "api", ActionRestart, sh("sleep 300 & echo $! > bg.pid; wait", time.Hour), o)
	if r.OK || r.TimedOut || !strings.HasPrefix(r.Err, "interrupted") {
		t.Errorf("result %+v", r)
	}
	waitDead(t, readPid(t, filepath.Join(dir, "bg.pid")))
}

func TestStatus(t *testing.T) {
	dir := t.TempDir()
	svcs := []rekey.Service{
		{Name: "up", Status: rekey.Command{Argv: []string{"true"}, Timeout: time.Minute}},
		{Name: "down", Status: sh("echo not running; exit 3", time.Minute)},
		{Name: "unknown"},
		{Name: "missing", Status: rekey.Command{Argv: []string{"./no-such-program"}}},
	}
	res := Status(context.Background(), svcs, Options{Dir: dir})
	if len(res) != 4 {
		t.Fatalf("results %+v", res)
	}
	if !res[0].OK || res[0].ExitCode != 0 {
		t.Errorf("up: %+v", res[0])
	}
	if res[1].OK || res[1].ExitCode != 3 || res[1].Err != "exit status 3" || strings.Join(res[1].Tail, "") != "not running" {
		t.Errorf("down: %+v", res[1])
	}
	if !res[2].OK || res[2].Skipped != "no status command" {
		t.Errorf("unknown: %+v", res[2])
	}
	if res[3].OK || !strings.HasPrefix(res[3].Err, "cannot start: ") {
		t.Errorf("missing: %+v", res[3])
	}
}

// TestDirAndEnv checks that commands run in Options.Dir with Options.Env
// (rekey's own environment when nil) and an empty stdin.
func TestDirAndEnv(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("REKEY_SERVICES_TEST", "inherited")
	c := sh(`pwd > out; echo "$REKEY_SERVICES_TEST" >> out; cat >> out`, time.Minute)
	if r := Run(context.Background(), "x", ActionStatus, c, Options{Dir: dir}); !r.OK {
		t.Fatalf("%+v", r)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "out"))
	real, _ := filepath.EvalSymlinks(dir)
	if got := string(b); got != real+"\ninherited\n" && got != dir+"\ninherited\n" {
		t.Errorf("out %q", got)
	}
	if r := Run(context.Background(), "x", ActionStatus, c, Options{Dir: dir, Env: []string{"REKEY_SERVICES_TEST=given", "PATH=" + os.Getenv("PATH")}}); !r.OK {
		t.Fatalf("%+v", r)
	}
	b, _ = os.ReadFile(filepath.Join(dir, "out"))
	if !strings.Contains(string(b), "\ngiven\n") {
		t.Errorf("out %q", b)
	}
}

// TestBackgroundProcess checks that a start command leaving a process
// running in the background (with its output redirected) succeeds at once
// and leaves it running.
func TestBackgroundProcess(t *testing.T) {
	dir := t.TempDir()
	r := Run(context.Background(), "daemon", ActionStart, sh("nohup sleep 300 >/dev/null 2>&1 & echo $! > bg.pid", time.Minute), Options{Dir: dir})
	if !r.OK {
		t.Fatalf("%+v", r)
	}
	pid := readPid(t, filepath.Join(dir, "bg.pid"))
	if !alive(pid) {
		t.Error("the background process was killed")
	}
	syscallKill(pid)
}

// TestEnvWithoutKeyMaterial: a command never sees rekey's key material,
// whether it comes from rekey's own environment (Env nil) or from the
// environment given; other variables pass.
func TestEnvWithoutKeyMaterial(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("REKEY_MASTER_KEY", "inherited-master-key")
	t.Setenv("REKEY_PASSPHRASE", "inherited-passphrase")
	t.Setenv("REKEY_NEW_MASTER_KEY", "inherited-new-key")
	t.Setenv("REKEY_ACTOR", "alice")
	c := sh(`env > out`, time.Minute)
	given := []string{"PATH=" + os.Getenv("PATH"), "REKEY_MASTER_KEY=given-master-key", "REKEY_NEW_PASSPHRASE=given-new", "APP_VAR=kept"}
	for _, o := range []Options{{Dir: dir}, {Dir: dir, Env: given}} {
		if r := Run(context.Background(), "x", ActionStatus, c, o); !r.OK {
			t.Fatalf("%+v", r)
		}
		b, _ := os.ReadFile(filepath.Join(dir, "out"))
		for _, s := range []string{"REKEY_MASTER_KEY", "REKEY_PASSPHRASE", "REKEY_NEW_", "master-key", "passphrase", "new-key", "given-new"} {
			if strings.Contains(string(b), s) {
				t.Errorf("Env %v: the command's environment holds %s", o.Env != nil, s)
			}
		}
		want := "REKEY_ACTOR=alice"
		if o.Env != nil {
			want = "APP_VAR=kept"
		}
		if !strings.Contains(string(b), want) {
			t.Errorf("Env %v: %s was removed", o.Env != nil, want)
		}
	}
}
