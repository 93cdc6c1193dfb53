package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/examples/atlas-app/internal/atlas"
)

// TestBinarySIGTERM builds atlas-app, seeds and serves with the real
// flags, and checks that SIGTERM stops it cleanly (exit 0).
func TestBinarySIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	d := newAppDB(t)
	e := env{atlas.KeyDatabaseURL: d.url, atlas.KeyJWTSecret: secretText(t), atlas.KeyEncryptionKey: newKey(t)}
	envFile := writeEnv(t, e)

	bin := filepath.Join(t.TempDir(), "atlas-app")
	gobin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if out, err := exec.Command(gobin, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
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
