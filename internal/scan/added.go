package scan

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
)

// zeroOID is git's id of no object (the parent side of an added file).
const zeroOID = "0000000000000000000000000000000000000000"

// hunk is the lines [start, start+n) a diff adds.
type hunk struct{ start, n int }

// addedLines tells which lines of blob to a commit added, compared with
// the blobs from at that path in its parents (git diff -U0, as `git log -p`
// shows the commit): a line is added when every parent's diff adds it (a
// parent without the file adds every line). It also returns the first line
// of the hunk holding it in the first parent's diff (1 when every line is
// added): gitleaks counts columns from there. A secret that stays in a file
// across later commits is so reported once, at the commit that added its
// line (gitleaks scans `git log -p`'s added lines), not at every later
// version of the file.
func addedLines(ctx context.Context, root string, from []string, to string) (func(line int) (frag int, ok bool), error) {
	var diffs [][]hunk
	for _, p := range from {
		if strings.Trim(p, "0") == "" {
			continue
		}
		hs, err := diffHunks(ctx, root, p, to)
		if err != nil {
			return nil, err
		}
		diffs = append(diffs, hs)
	}
	return func(line int) (int, bool) {
		frag := 1
		for i, hs := range diffs {
			h, ok := hunkOf(hs, line)
			if !ok {
				return 0, false
			}
			if i == 0 {
				frag = h.start
			}
		}
		return frag, true
	}, nil
}

func hunkOf(hs []hunk, line int) (hunk, bool) {
	for _, h := range hs {
		if h.start <= line && line < h.start+h.n {
			return h, true
		}
	}
	return hunk{}, false
}

// diffHunks lists the hunks of `git diff -U0 a b` (two blobs; binary ones
// diffed as text) by the lines they add. Only hunk headers are parsed; a
// line of any length is skipped, whatever its length.
func diffHunks(ctx context.Context, root, a, b string) ([]hunk, error) {
	args := []string{"diff", "-U0", "--text", "--no-color", "--no-ext-diff", "--no-textconv", a, b}
	cmd := gitCmd(ctx, root, args)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	var hs []hunk
	r := bufio.NewReaderSize(stdout, 64<<10)
	start := true // at the start of a line
	for {
		line, err := r.ReadSlice('\n')
		if start && bytes.HasPrefix(line, []byte("@@ ")) {
			if h, ok := parseHunk(string(line)); ok {
				hs = append(hs, h)
			}
		}
		start = err == nil
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			break
		}
	}
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("git diff: %w: %s", err, firstLine(stderr.String()))
	}
	return hs, nil
}

// parseHunk parses the lines a hunk header ("@@ -a,b +c,d @@") adds.
func parseHunk(line string) (hunk, bool) {
	f := strings.Fields(line)
	if len(f) < 3 || !strings.HasPrefix(f[2], "+") {
		return hunk{}, false
	}
	start, count, hasCount := strings.Cut(f[2][1:], ",")
	s, err1 := strconv.Atoi(start)
	n := 1
	var err2 error
	if hasCount {
		n, err2 = strconv.Atoi(count)
	}
	return hunk{s, n}, err1 == nil && err2 == nil && n > 0
}
