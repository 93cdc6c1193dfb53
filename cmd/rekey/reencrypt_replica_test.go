package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/internal/testkit"
)

// TestReencryptReplicaLag: rekey rotate ENCRYPTION_KEY with a streaming
// replica (started by the test) named in replicas: whose replay is paused
// while the primary writes: the re-encryption says it holds for the
// replica, and finishes once the replay resumes; the replica then has
// every row on the new key.
func TestReencryptReplicaLag(t *testing.T) {
	p := rcNewProject(t, "atlas", 1000, "REPLICA_URL=postgres://replica:placeholder-pw@127.0.0.1:1/atlas\n")
	rep, err := p.cluster.StartReplica()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rep.Stop(); err != nil {
			t.Error(err)
		}
	})
	repURL := rep.ConnString(rep.SuperUser, rep.SuperPassword, "atlas")
	testkit.EditFile(t, p.envPath, "postgres://replica:placeholder-pw@127.0.0.1:1/atlas", repURL)
	testkit.EditFile(t, filepath.Join(p.dir, "rekey.yaml"), "batch_size: 500}", "batch_size: 500, replica_lag_ceiling: 500ms, replicas: [REPLICA_URL]}")
	p.must("config", "trust")
	p.must("set", "REPLICA_URL", "--from-target")
	ctx := testkit.Ctx(t, 2*time.Minute)
	// A transaction replayed since the replica started: its lag is measured
	// from the last one (pg_last_xact_replay_timestamp).
	p.exec("UPDATE patients SET email = email WHERE id = 1")
	if err := rep.WaitReplayed(ctx); err != nil {
		t.Fatal(err)
	}
	rconn, err := rep.Connect(ctx, "atlas")
	if err != nil {
		t.Fatal(err)
	}
	defer rconn.Close(context.Background())
	if _, err := rconn.Exec(ctx, "SELECT pg_wal_replay_pause()"); err != nil {
		t.Fatal(err)
	}
	// Write on the primary until the paused replica is a ceiling behind.
	for {
		p.exec("UPDATE patients SET email = email WHERE id = 1")
		var secs float64
		if err := rconn.QueryRow(ctx, `SELECT CASE WHEN pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()
			THEN coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) ELSE 0 END::float8`).Scan(&secs); err != nil {
			t.Fatal(err)
		}
		if secs > 0.5 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("the paused replica never fell behind")
		case <-time.After(100 * time.Millisecond):
		}
	}

	cmd, stdout, _ := p.command(nil, "rotate", "ENCRYPTION_KEY")
	cmd.Stderr = nil
	errPipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var stderr strings.Builder
	held := make(chan struct{})
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(errPipe)
		once := sync.Once{}
		for sc.Scan() {
			mu.Lock()
			stderr.WriteString(sc.Text() + "\n")
			mu.Unlock()
			if strings.Contains(sc.Text(), "replica lag: holding public.patients: replica REPLICA_URL") {
				once.Do(func() { close(held) })
			}
		}
	}()
	select {
	case <-held:
	case <-read:
		t.Fatalf("rotate ended without holding for the replica:\n%s", stderr.String())
	case <-ctx.Done():
		t.Fatal("rotate never held for the replica")
	}
	if _, err := rconn.Exec(ctx, "SELECT pg_wal_replay_resume()"); err != nil {
		t.Fatal(err)
	}
	<-read
	r := p.finish(cmd, cmd.Wait(), stdout, new(bytes.Buffer), []string{"rotate", "ENCRYPTION_KEY"}, start)
	out := stderr.String()
	if r.code != 0 {
		t.Fatalf("rotate exited %d:\n%s", r.code, out)
	}
	if !strings.Contains(out, "replica lag: resuming public.patients") || !strings.Contains(out, "re-encrypted 1900 values of ENCRYPTION_KEY") {
		t.Fatalf("stderr of rotate:\n%s", out)
	}
	if strings.Contains(out+r.stdout, rep.SuperPassword) {
		t.Fatal("a database password appears in rekey's output")
	}
	key, _ := p.envKeys()
	p.check(key)
	if err := rep.WaitReplayed(ctx); err != nil {
		t.Fatal(err)
	}
	p.checkRows(ctx, rconn, key, nil) // the replica has every row on the new key
	if b, _ := os.ReadFile(filepath.Join(p.dir, ".env")); !strings.Contains(string(b), repURL) {
		t.Fatal("the replica URL left the .env")
	}
}
