package main

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rekeyhq/rekey/internal/engine"
	"github.com/rekeyhq/rekey/internal/sshtest"
)

// TestSSHTargets: an environment with a local .env and two .env files on
// other hosts (real sshd servers, type: ssh targets). A rotation publishes
// to all three, every other byte of each kept; a hand edit of the managed
// key on one host is drift: the next rotation refuses before writing
// anywhere, and the edited file stays as the person left it; a changed
// host key is refused the same way. No value in any output.
func TestSSHTargets(t *testing.T) {
	sp := newSSHProject(t, "web1", "web2")
	p, web1, web2, v1 := sp.ctProject, sp.hosts[0], sp.hosts[1], sp.v1
	remote := sshRemoteEnv
	var outputs []string
	run := func(want int, args ...string) ctResult {
		t.Helper()
		r := p.run(args...)
		outputs = append(outputs, r.stdout, r.stderr)
		if r.code != want || r.sig != 0 {
			t.Fatalf("want exit %d: %v", want, r)
		}
		return r
	}
	run(0, "rotate", "JWT_SECRET")
	v2 := p.get(2)
	for _, s := range []*sshtest.Server{web1, web2} {
		got, _ := os.ReadFile(remote(s))
		if string(got) != "# on "+s.Name+"\nJWT_SECRET="+v2+"\nWORKERS=4\n" {
			t.Errorf("%s after the rotation: %q", s.Name, got)
		}
		if fi, _ := os.Stat(remote(s)); fi.Mode().Perm() != 0o640 {
			t.Errorf("%s: mode %04o, want 0640 kept", s.Name, fi.Mode().Perm())
		}
	}
	if v, _ := ctEnvValue(p.readEnv(), "JWT_SECRET"); v != v2 {
		t.Error("the local .env does not hold the new value")
	}
	hostsStatus := func(want int) map[string]sshHostJSON {
		t.Helper()
		r := run(want, "hosts", "status", "--json")
		var hs []sshHostJSON
		if err := json.Unmarshal([]byte(r.stdout), &hs); err != nil {
			t.Fatalf("hosts status --json: %v\n%s", err, r.stdout)
		}
		out := map[string]sshHostJSON{}
		for _, h := range hs {
			out[h.Target] = h
		}
		return out
	}
	for name, h := range hostsStatus(0) {
		if !h.Reachable || h.HostKey != "ok" || len(h.Secrets) != 1 || h.Secrets[0].State != "current" || h.Secrets[0].Version != 2 {
			t.Errorf("hosts status of %s after the rotation: %+v", name, h)
		}
	}

	// A hand edit of the managed key on web2: drift, refused before any write.
	edited := "# on web2\nJWT_SECRET=typed-by-hand-on-web2\nWORKERS=4\n"
	web2.WriteFile(t, ".env", edited, 0o640)
	r := run(4, "rotate", "JWT_SECRET")
	if !strings.Contains(r.stderr, "web2") {
		t.Errorf("the drift does not name web2:\n%s", r.stderr)
	}
	if got, _ := os.ReadFile(remote(web2)); string(got) != edited {
		t.Errorf("web2's hand edit was overwritten: %q", got)
	}
	if got, _ := os.ReadFile(remote(web1)); !strings.Contains(string(got), "JWT_SECRET="+v2+"\n") {
		t.Errorf("web1 changed by a refused rotation: %q", got)
	}
	if hs := hostsStatus(4); hs["web2"].Secrets[0].State != "unknown" || hs["web1"].Secrets[0].State != "current" {
		t.Errorf("hosts status after web2's hand edit: %+v", hs)
	}
	web2.WriteFile(t, ".env", "# on web2\nJWT_SECRET="+v2+"\nWORKERS=4\n", 0o640)

	// web1's host key changed: refused, nothing written.
	web1.Impersonate(t)
	if hs := hostsStatus(4); hs["web1"].HostKey != "changed" || hs["web1"].Reachable || hs["web2"].Secrets[0].State != "current" {
		t.Errorf("hosts status with web1's host key changed: %+v", hs)
	}
	r = run(5, "rotate", "JWT_SECRET")
	if !strings.Contains(r.stderr, "web1") || !strings.Contains(r.stderr, "CHANGED") {
		t.Errorf("a changed host key is not named:\n%s", r.stderr)
	}
	for _, s := range []*sshtest.Server{web1, web2} {
		if got, _ := os.ReadFile(remote(s)); !strings.Contains(string(got), "JWT_SECRET="+v2+"\n") {
			t.Errorf("%s changed although web1's host key was refused: %q", s.Name, got)
		}
	}
	all := strings.Join(outputs, "\n")
	for _, v := range []string{v1, v2} {
		if strings.Contains(all, v) {
			t.Fatal("a value in an output")
		}
	}
}

// sshProject is a project whose environment has a local .env (app) and one
// ssh target per host, each a real sshd; every .env starts with the same
// JWT_SECRET (v1). rekey.yaml is approved.
type sshProject struct {
	*ctProject
	hosts []*sshtest.Server
	v1    string
}

// sshRemoteEnv is the .env of host s.
func sshRemoteEnv(s *sshtest.Server) string { return filepath.Join(s.Home, ".env") }

func newSSHProject(t *testing.T, names ...string) *sshProject {
	t.Helper()
	sp := &sshProject{v1: ctRandB64(48, base64.StdEncoding)}
	for _, n := range names {
		s := sshtest.Start(t, n)
		s.WriteFile(t, ".env", "# on "+s.Name+"\nJWT_SECRET="+sp.v1+"\nWORKERS=4\n", 0o640)
		sp.hosts = append(sp.hosts, s)
	}
	p := ctInitProject(t, t.TempDir(), ".env", "ssh-targets", "JWT_SECRET="+sp.v1+"\nRUST_LOG=info\n")
	p.env = append(p.env, "REKEY_SSH_CONFIG="+sshtest.ClientConfig(t, t.TempDir(), sp.hosts...))
	cfg := filepath.Join(p.dir, "rekey.yaml")
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	local := "      app: {type: dotenv, path: .env}\n"
	targets := local
	for _, s := range sp.hosts {
		targets += "      " + s.Name + ": {type: ssh, host: \"" + s.Dest() + "\", path: " + sshRemoteEnv(s) + "}\n"
	}
	if !strings.Contains(string(raw), local) {
		t.Fatalf("rekey.yaml has no local target line:\n%s", raw)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(raw), local, targets, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	p.must("config", "trust")
	sp.ctProject = p
	return sp
}

// consistentEverywhere fails unless the local .env and every host's hold
// the store's current JWT_SECRET and no write left a temporary file on a
// host.
func (sp *sshProject) consistentEverywhere(what string) {
	t := sp.t
	t.Helper()
	cur := sp.get(0)
	if v, _ := ctEnvValue(sp.readEnv(), "JWT_SECRET"); v != cur {
		t.Errorf("%s: the local .env does not hold the current JWT_SECRET", what)
	}
	for _, s := range sp.hosts {
		got, _ := os.ReadFile(sshRemoteEnv(s))
		if string(got) != "# on "+s.Name+"\nJWT_SECRET="+cur+"\nWORKERS=4\n" {
			t.Errorf("%s: %s holds %q, not the current JWT_SECRET with its other bytes", what, s.Name, got)
		}
		ents, _ := os.ReadDir(s.Home)
		for _, e := range ents {
			if strings.Contains(e.Name(), ".rekey-") {
				t.Errorf("%s: a temporary file left on %s: %s", what, s.Name, e.Name())
			}
		}
	}
}

// TestSSHTargetCrashes: rekey killed (SIGKILL) at every step boundary of a
// rotation that publishes to two hosts; `rekey recover` completes or rolls
// back, and the local .env and both hosts then hold the store's current
// value, with no temporary file left on a host. A temporary file a kill in
// the middle of a remote write would leave is removed by the recovery.
func TestSSHTargetCrashes(t *testing.T) {
	sp := newSSHProject(t, "web1", "web2")
	for _, fp := range engine.FaultPoints() {
		if fp.Needs != engine.NeedNothing {
			continue
		}
		r := sp.runEnv([]string{"REKEY_TEST_FAULT=" + fp.Point}, "rotate", "JWT_SECRET")
		if r.sig != syscall.SIGKILL {
			if r.code != 0 {
				t.Fatalf("%s: %v", fp.Point, r)
			}
			continue // not reached by this rotation
		}
		sp.recoverOK()
		sp.consistentEverywhere("after a crash at " + fp.Point)
	}
	// What a kill inside the remote write leaves: a temporary file beside
	// the host's .env (it may hold the new value).
	sp.hosts[1].WriteFile(t, "..env.rekey-00112233445566ff.tmp", "JWT_SECRET=half-written\n", 0o600)
	r := sp.recoverOK()
	if !strings.Contains(r.stderr, "removed ..env.rekey-00112233445566ff.tmp, left beside web2") {
		t.Errorf("recover does not say it removed the host's temporary file:\n%s", r.stderr)
	}
	sp.consistentEverywhere("after recover removed a host's temporary file")
}

// sshHostJSON is one host of `rekey hosts status --json`.
type sshHostJSON struct {
	Target    string `json:"target"`
	Reachable bool   `json:"reachable"`
	HostKey   string `json:"host_key"`
	Secrets   []struct {
		Name    string `json:"name"`
		State   string `json:"state"`
		Version int    `json:"version"`
	} `json:"secrets"`
}

// TestLogCheckAfterRestart: a log check watches the service's log after
// the rotation's restart; a restart that logs an ERROR fails the rotation,
// which rolls back (exit 7) quoting the line; a quiet one passes.
func TestLogCheckAfterRestart(t *testing.T) {
	p := ctInitProject(t, t.TempDir(), ".env", "log-check", "JWT_SECRET="+ctRandB64(48, base64.StdEncoding)+"\nRUST_LOG=info\n")
	ext := t.TempDir()
	logf, mode := filepath.Join(ext, "app.log"), filepath.Join(ext, "mode")
	if err := os.WriteFile(logf, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	restart := filepath.Join(ext, "restart.sh")
	script := "#!/bin/sh\n(sleep 0.2; if [ -f '" + mode + "' ]; then echo 'ERROR cannot verify tokens: bad key'; else echo 'INFO reloaded'; fi >> '" + logf + "') &\n"
	if err := os.WriteFile(restart, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(p.dir, "rekey.yaml")
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	extra := "\nservices:\n  api: {restart: [" + restart + "], consumes: [JWT_SECRET]}\n" +
		"checks:\n  logs: {log: {file: " + logf + ", window: 1s}}\n"
	if err := os.WriteFile(cfg, append(raw, extra...), 0o644); err != nil {
		t.Fatal(err)
	}
	p.must("config", "trust")
	if out := p.must("rotate", "JWT_SECRET"); !strings.Contains(out, "JWT_SECRET") {
		t.Fatalf("rotate: %s", out)
	}
	if err := os.WriteFile(mode, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	before := p.get(0)
	r := p.run("rotate", "JWT_SECRET")
	if r.code != 7 || !strings.Contains(r.stdout+r.stderr, "ERROR cannot verify tokens: bad key") {
		t.Fatalf("a restart that logs an error: %v", r)
	}
	if p.get(0) != before {
		t.Error("the rotation was not rolled back")
	}
}

// TestCommandTarget: a secret manager updated through its CLI (type:
// command; a stand-in storing a JSON document). A rotation publishes to
// the .env and to the manager; a manager that refuses the write fails the
// rotation, which rolls back: the .env and the manager hold the current
// value again, and no value is in any output.
func TestCommandTarget(t *testing.T) {
	v1 := ctRandB64(48, base64.StdEncoding)
	p := ctInitProject(t, t.TempDir(), ".env", "cmd-target", "JWT_SECRET="+v1+"\nRUST_LOG=info\n")
	ext := t.TempDir()
	store := filepath.Join(ext, "store.json")
	if err := os.WriteFile(store, []byte(`{"JWT_SECRET":"`+v1+`","OTHER":"kept"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	sm := filepath.Join(ext, "sm")
	script := "#!/bin/sh\ncase \"$1\" in\nread) cat '" + store + "' ;;\nwrite) if [ -n \"$SM_DOWN\" ]; then echo 'error: 503 service unavailable' >&2; exit 2; fi; cat > '" + store + ".tmp' && mv '" + store + ".tmp' '" + store + "' ;;\nesac\n"
	if err := os.WriteFile(sm, []byte(script), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(p.dir, "rekey.yaml")
	raw, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	local := "      app: {type: dotenv, path: .env}\n"
	withSM := local + "      vault: {type: command, read: [" + sm + ", read], write: [" + sm + ", write]}\n"
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(raw), local, withSM, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	p.must("config", "trust")
	var outputs []string
	stored := func() map[string]string {
		var doc map[string]string
		b, _ := os.ReadFile(store)
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatalf("store: %v", err)
		}
		return doc
	}
	r := p.run("rotate", "JWT_SECRET")
	outputs = append(outputs, r.stdout, r.stderr)
	if r.code != 0 {
		t.Fatalf("rotate: %v", r)
	}
	v2 := p.get(2)
	if doc := stored(); doc["JWT_SECRET"] != v2 || doc["OTHER"] != "kept" {
		t.Fatalf("the manager after the rotation: %v", doc)
	}
	r = p.runEnv([]string{"SM_DOWN=1"}, "rotate", "JWT_SECRET")
	outputs = append(outputs, r.stdout, r.stderr)
	if r.code == 0 || !strings.Contains(r.stderr, "target vault: the write command") || !strings.Contains(r.stderr, "503 service unavailable") {
		t.Fatalf("a manager refusing the write: %v", r)
	}
	if p.get(0) != v2 || stored()["JWT_SECRET"] != v2 {
		t.Error("after the failed rotation, the store or the manager is not on v2")
	}
	if v, _ := ctEnvValue(p.readEnv(), "JWT_SECRET"); v != v2 {
		t.Error("the .env was not restored to v2")
	}
	all := strings.Join(outputs, "\n")
	for _, v := range []string{v1, v2} {
		if strings.Contains(all, v) {
			t.Fatal("a value in an output")
		}
	}
}
