package storetest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/rekeyhq/rekey"
)

// recorder is a reporter that keeps what it is told.
type recorder struct{ msgs []string }

func (*recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.msgs = append(r.msgs, fmt.Sprintf(format, args...))
}

// fakeFingerprinter is the only Store method checkValue calls.
type fakeFingerprinter struct{ rekey.Store }

func (fakeFingerprinter) Fingerprint(v rekey.Value) string {
	return fmt.Sprintf("fp:len%d", v.Len())
}

// TestCheckValueNeverPrintsValues checks the suite's own hygiene: a failing
// value comparison reports neither the value read nor the value expected.
func TestCheckValueNeverPrintsValues(t *testing.T) {
	const want, got = "expected-secret-QWxhZGRpbjpvcGVu", "returned-secret-b3BlbiBzZXNhbWU="
	for _, s := range []rekey.Store{nil, fakeFingerprinter{}} {
		var r recorder
		if checkValue(&r, s, "case", rekey.NewValueString(got), []byte(want)) {
			t.Fatal("checkValue accepted different values")
		}
		if len(r.msgs) != 1 {
			t.Fatalf("checkValue reported %d messages, want 1", len(r.msgs))
		}
		msg := r.msgs[0]
		for _, secret := range []string{want, got, "QWxhZGRpbjpvcGVu", "b3BlbiBzZXNhbWU", "secret-"} {
			if strings.Contains(msg, secret) {
				t.Errorf("checkValue's message contains a value: %d bytes of message", len(msg))
			}
		}
		if !strings.Contains(msg, "32 bytes") || !strings.Contains(msg, "byte 0") {
			t.Errorf("checkValue's message lacks lengths or offset: %q", msg)
		}
	}
	var r recorder
	if !checkValue(&r, nil, "equal", rekey.NewValueString("same"), []byte("same")) || len(r.msgs) != 0 {
		t.Errorf("checkValue rejected equal values: %q", r.msgs)
	}
	if !checkValue(&r, nil, "empty", rekey.Value{}, []byte{}) || len(r.msgs) != 0 {
		t.Errorf("checkValue rejected empty values: %q", r.msgs)
	}
}

// TestSuiteNames checks that subtest names are unique and need no escaping
// in -run patterns.
func TestSuiteNames(t *testing.T) {
	seen := map[string]bool{}
	for _, tc := range tests {
		if seen[tc.name] {
			t.Errorf("duplicate subtest %q", tc.name)
		}
		seen[tc.name] = true
		if strings.ContainsAny(tc.name, " /#") {
			t.Errorf("subtest name %q holds a space, slash or #", tc.name)
		}
	}
}
