package main

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/examples/atlas-app/atlas"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// TestBinarySIGTERM builds atlas-app, seeds and serves with the real
// flags, and checks that SIGTERM stops it cleanly (exit 0).
func TestBinarySIGTERM(t *testing.T) {
	testkit.Long(t, "builds the binary")
	d := newAppDB(t)
	e := env{atlas.KeyDatabaseURL: d.url, atlas.KeyJWTSecret: secretText(t), atlas.KeyEncryptionKey: newKey(t)}
	envFile := writeEnv(t, e)

	bin := buildApp(t)
	if out, err := exec.Command(bin, "--env-file", envFile, "--seed", "2").CombinedOutput(); err != nil {
		t.Fatalf("--seed: %v\n%s", err, out)
	}

	cmd := exec.Command(bin, "--env-file", envFile, "--listen", "127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	var log strings.Builder
	addrc := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		re := regexp.MustCompile(`listening on (127\.0\.0\.1:\d+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			log.WriteString(sc.Text() + "\n")
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addrc <- m[1]
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	var addr string
	select {
	case addr = <-addrc:
	case <-time.After(20 * time.Second):
		t.Fatal("no listening line")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/health", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/health: %d", resp.StatusCode)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-done
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "stopped") {
		t.Errorf("no clean-stop line:\n%s", log.String())
	}
	for _, s := range []string{d.password, e[atlas.KeyJWTSecret], e[atlas.KeyEncryptionKey]} {
		if strings.Contains(log.String(), s) {
			t.Error("a secret reached the log")
		}
	}
}

// TestBinaryReload drives the process commands of the built binary the way
// rekey's services: do: start (background, pidfile), restart (SIGHUP: the
// same process and listener) under a load loop that must see no failed
// request, a reload with an unusable .env (exit 1, then 503 everywhere),
// the fix, status and stop.
func TestBinaryReload(t *testing.T) {
	testkit.Long(t, "builds the binary")
	d := newAppDB(t)
	oldJWT, newJWT, key := secretText(t), secretText(t), newKey(t)
	e := env{atlas.KeyDatabaseURL: d.url, atlas.KeyJWTSecret: oldJWT, atlas.KeyEncryptionKey: key}
	envFile := writeEnv(t, e)
	dir := filepath.Dir(envFile)
	pidfile := filepath.Join(dir, "app.pid")
	bin := buildApp(t)
	if out, err := exec.Command(bin, "--env-file", envFile, "--seed", "3").CombinedOutput(); err != nil {
		t.Fatalf("--seed: %v\n%s", err, out)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var outputs strings.Builder
	appCmd := func(wantCode int, args ...string) {
		t.Helper()
		cmd := exec.Command(bin, args...)
		out, err := cmd.CombinedOutput()
		outputs.Write(out)
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != wantCode {
			t.Fatalf("atlas-app %v: exit %d, want %d\n%s", args, code, wantCode, out)
		}
	}
	common := []string{"--env-file", envFile, "--listen", addr, "--pidfile", pidfile}
	appCmd(0, append([]string{"start"}, common...)...)
	t.Cleanup(func() { appCmd(0, "stop", "--pidfile", pidfile) })
	pid := atlas.ReadPID(pidfile)
	if pid == 0 {
		t.Fatal("no pidfile after start")
	}
	appCmd(0, append([]string{"start"}, common...)...) // already running
	appCmd(0, "status", "--pidfile", pidfile)

	a := &app{t: t, base: "http://" + addr, client: &http.Client{Timeout: 20 * time.Second}, log: &syncBuffer{}, bodies: &syncBuffer{}}
	oldTok := a.login()

	// Load: log in and read a patient continuously while the app reloads.
	var requests, failures atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				p, err := atlas.Smoke(context.Background(), "http://"+addr, 2)
				requests.Add(2)
				if err != nil || p.SSN == nil {
					failures.Add(1)
					t.Logf("request failed during reload: %v", err)
				}
			}
		}()
	}
	// A graceful JWT rotation: the new secret, the old one as previous.
	e[atlas.KeyJWTSecret], e[atlas.KeyJWTSecretPrevious] = newJWT, oldJWT
	writeEnvAt(t, envFile, e)
	for i := 0; i < 5; i++ {
		appCmd(0, append([]string{"restart"}, common...)...)
	}
	close(stop)
	wg.Wait()
	t.Logf("%d requests during 5 reloads, %d failed", requests.Load(), failures.Load())
	if failures.Load() != 0 {
		t.Errorf("%d requests failed during reloads", failures.Load())
	}
	if atlas.ReadPID(pidfile) != pid {
		t.Fatal("restart replaced the process: a reload must keep it")
	}
	if code, _, body := a.patient(oldTok, 1); code != http.StatusOK {
		t.Fatalf("old token during the grace: %d %s", code, body)
	}
	newTok := a.login()
	if _, err := atlas.VerifyToken([][]byte{[]byte(newJWT)}, newTok); err != nil {
		t.Fatal("the token after the reload is not signed with the new secret")
	}

	// An unusable .env: a JWT_SECRET too short for HS512. The reload fails
	// and the app answers 503 everywhere instead of carrying on.
	e[atlas.KeyJWTSecret] = "too-short"
	writeEnvAt(t, envFile, e)
	appCmd(1, "reload", "--pidfile", pidfile)
	appCmd(1, "status", "--pidfile", pidfile)
	if code, body := a.do("GET", "/health", "", nil); code != http.StatusServiceUnavailable || !strings.Contains(string(body), "reload failed") {
		t.Errorf("/health after a failed reload: %d %s", code, body)
	}
	if code, _ := a.do("POST", "/login", "", map[string]string{"username": "demo", "password": atlas.DefaultDemoPassword}); code != http.StatusServiceUnavailable {
		t.Errorf("/login after a failed reload: %d, want 503", code)
	}
	if code, _, _ := a.patient(newTok, 1); code != http.StatusServiceUnavailable {
		t.Errorf("/patients after a failed reload: %d, want 503", code)
	}
	// A DATABASE_URL that does not log in fails the reload the same way.
	e[atlas.KeyJWTSecret] = newJWT
	e[atlas.KeyDatabaseURL] = strings.Replace(d.url, d.password, "wrong-"+d.password[6:], 1)
	writeEnvAt(t, envFile, e)
	appCmd(1, append([]string{"restart"}, common...)...)
	// Fixed: healthy again, same process.
	e[atlas.KeyDatabaseURL] = d.url
	writeEnvAt(t, envFile, e)
	appCmd(0, append([]string{"restart"}, common...)...)
	appCmd(0, "status", "--pidfile", pidfile)
	if code, _, body := a.patient(a.login(), 3); code != http.StatusOK {
		t.Fatalf("after the fix: %d %s", code, body)
	}
	appCmd(0, "stop", "--pidfile", pidfile)
	if atlas.Alive(pid) {
		t.Error("still running after stop")
	}
	appCmd(1, "status", "--pidfile", pidfile)
	appCmd(0, "stop", "--pidfile", pidfile) // not running: still 0

	logs, _ := os.ReadFile(pidfile + ".log")
	for _, s := range []string{d.password, oldJWT, newJWT, key} {
		if strings.Contains(outputs.String()+string(logs), s) {
			t.Error("a secret reached an output or the log")
		}
	}
	a.noSecrets(d.password, oldJWT, newJWT, key)
}

// buildApp builds the atlas-app binary once per test binary.
func buildApp(t *testing.T) string { t.Helper(); return testkit.GoBuild(t, ".") }

// writeEnvAt rewrites the .env at path with e (atomically, as rekey does).
func writeEnvAt(t *testing.T, path string, e env) {
	t.Helper()
	tmp := writeEnv(t, e)
	b, err := os.ReadFile(tmp)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path+".new", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
}
