package config

import (
	"strings"
	"testing"
)

// TestCheckpointSchema: checkpoint_schema in a reencrypt section is read,
// written back by Marshal, and left out when not set.
func TestCheckpointSchema(t *testing.T) {
	c, err := Parse("rekey.yaml", []byte(head+"secrets:\n"+dataKey+"      checkpoint_schema: rekey_state\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Secrets[0].Reencrypt.CheckpointSchema; got != "rekey_state" {
		t.Fatalf("CheckpointSchema = %q", got)
	}
	out, err := Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "checkpoint_schema: rekey_state") {
		t.Fatalf("not marshalled back:\n%s", out)
	}
	c2, err := Parse("rekey.yaml", out)
	if err != nil || c2.Secrets[0].Reencrypt.CheckpointSchema != "rekey_state" {
		t.Fatalf("round trip: %v", err)
	}
	c, err = Parse("rekey.yaml", []byte(head+"secrets:\n"+dataKey))
	if err != nil || c.Secrets[0].Reencrypt.CheckpointSchema != "" {
		t.Fatalf("default: %v", err)
	}
	if out, _ := Marshal(c); strings.Contains(string(out), "checkpoint_schema") {
		t.Fatalf("written when not set:\n%s", out)
	}
	if _, err := Parse("rekey.yaml", []byte(head+"secrets:\n"+dataKey+"      checkpoint_schema: [a]\n")); err == nil {
		t.Fatal("a list as checkpoint_schema was accepted")
	}
}
