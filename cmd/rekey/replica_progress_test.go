package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/internal/reencrypt"
)

// TestRowProgressReplicaLag: the progress line shows the largest replica
// lag when a replica is behind, nothing when none is.
func TestRowProgressReplicaLag(t *testing.T) {
	var out bytes.Buffer
	p := rowProgress(&out, false, "re-encrypting K", time.Now, 0, func() {})
	p(reencrypt.Progress{Done: 10, Total: 20, ReplicaLag: 1234567890 * time.Nanosecond})
	if want := "  re-encrypting K: [##########..........] 10/20 rows (50%), replica lag 1.235s\n"; out.String() != want {
		t.Fatalf("got %q\nwant %q", out.String(), want)
	}
	out.Reset()
	p(reencrypt.Progress{Done: 10, Total: 20})
	if bytes.Contains(out.Bytes(), []byte("replica")) {
		t.Fatalf("no replica behind: %q", out.String())
	}
}
