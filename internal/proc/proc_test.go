package proc

import (
	"strings"
	"testing"
)

// TestLongOutputCut checks that output beyond what is kept does not leak a
// partial line (a secret cut in half escapes redaction).
func TestLongOutputCut(t *testing.T) {
	tl := &tail{}
	tl.Write([]byte("SECRET-" + strings.Repeat("x", maxOutput) + "\nend\n"))
	lines := tl.lines(10, nil)
	if len(lines) != 1 || lines[0] != "end" {
		t.Errorf("lines %q", lines)
	}
}
