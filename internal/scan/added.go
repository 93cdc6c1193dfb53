package scan

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync"
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
// version of the file. The diffs are those diffAll computed; a blob larger
// than wholeLimit is not diffed (git would load it whole): every line of it
// counts as added.
func (h *history) addedLines(from []string, to string) func(line int) (frag int, ok bool) {
	var diffs [][]hunk
	for _, p := range from {
		if hs, ok := h.hunks[[2]string{p, to}]; ok {
			diffs = append(diffs, hs)
		}
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
	}
}

// diffAll runs, on a few cores, the diffs addedLines needs: each matching
// blob with the blob its path held in each parent of each commit that
// introduced it, unless either is large.
func (h *history) diffAll(ctx context.Context, root string, hits map[string][]Finding) error {
	h.hunks = map[[2]string][]hunk{}
	var todo [][2]string
	for oid := range hits {
		for _, in := range h.intros[oid] {
			for _, p := range in.from {
				pr := [2]string{p, oid}
				if _, ok := h.hunks[pr]; ok || strings.Trim(p, "0") == "" || h.big[p] || h.big[oid] {
					continue
				}
				h.hunks[pr] = nil
				todo = append(todo, pr)
			}
		}
	}
	var mu sync.Mutex
	var first error
	jobs := make(chan [2]string)
	var wg sync.WaitGroup
	for range min(len(todo), max(2, runtime.GOMAXPROCS(0))) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for pr := range jobs {
				hs, err := diffHunks(ctx, root, pr[0], pr[1])
				mu.Lock()
				h.hunks[pr] = hs
				if err != nil && first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	for _, pr := range todo {
		jobs <- pr
	}
	close(jobs)
	wg.Wait()
	return first
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
