package config

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// replicaSecret is a managed secret holding a replica's URL.
const replicaSecret = "  REPLICA_URL:\n    kind: manual\n"

func TestReplicaKeys(t *testing.T) {
	y := head + "secrets:\n" + replicaSecret + dataKey + "      replica_lag_ceiling: 2s\n      replicas: [REPLICA_URL]\n"
	c, err := Parse("rekey.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Secrets[1].Reencrypt
	if r.ReplicaLagCeiling != 2*time.Second || !slices.Equal(r.Replicas, []string{"REPLICA_URL"}) {
		t.Fatalf("got ceiling %v replicas %q", r.ReplicaLagCeiling, r.Replicas)
	}
	out, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "replica_lag_ceiling: 2s") || !strings.Contains(string(out), "replicas: [REPLICA_URL]") {
		t.Fatalf("marshal lost the replica keys:\n%s", out)
	}
	c2, err := Parse("rekey.yaml", out)
	if err != nil {
		t.Fatal(err)
	}
	if r2 := c2.Secrets[1].Reencrypt; r2.ReplicaLagCeiling != r.ReplicaLagCeiling || !slices.Equal(r2.Replicas, r.Replicas) {
		t.Fatalf("round trip: %v %q", r2.ReplicaLagCeiling, r2.Replicas)
	}
}

func TestReplicaErrors(t *testing.T) {
	for _, tc := range []struct{ keys, msg, hint string }{
		{"      replicas: [REPLICA_ULR] # <-\n", `"REPLICA_ULR" is not a managed secret`, "REPLICA_URL"},
		{"      replicas: REPLICA_URL # <-\n", "replicas of reencrypt of secret ENCRYPTION_KEY must be a list", "replicas: [REPLICA_URL]"},
		{"      replica_lag_ceiling: soon # <-\n", "replica_lag_ceiling of reencrypt of secret ENCRYPTION_KEY", "90d"},
	} {
		y := head + "secrets:\n" + replicaSecret + dataKey + tc.keys
		_, err := Parse("rekey.yaml", []byte(y))
		if err == nil {
			t.Fatalf("%q: no error", tc.keys)
		}
		line := markedLine(t, y)
		if want := "rekey.yaml:" + strconv.Itoa(line) + ":"; !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%q: error %q, want %s... %s", tc.keys, err, want, tc.msg)
		}
		if e, ok := err.(*Error); !ok || !strings.Contains(e.Hint, tc.hint) {
			t.Errorf("%q: hint of %v does not contain %q", tc.keys, err, e.Hint)
		}
	}
}
