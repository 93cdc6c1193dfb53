package scan

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// This file scans the history: every blob of the object store, each
// matching one attributed to the commits that introduce it.

// scanHistory scans every blob of the object store and attributes each
// matching one to the commits that introduce it (see ScanRepo).
func scanHistory(ctx context.Context, root string, m *Matcher, opt Options, index map[string][]string) ([]Finding, error) {
	blobs, big, total, err := listBlobs(ctx, root)
	if err != nil {
		return nil, err
	}
	hits, err := scanBlobs(ctx, root, m, blobs, total, opt.Progress)
	if err != nil || len(hits) == 0 {
		return nil, err
	}
	tips, err := stashTips(ctx, root)
	if err != nil {
		return nil, err
	}
	h, err := readHistory(ctx, root, opt.Since, hits)
	if err != nil {
		return nil, err
	}
	if err := h.reachOrphans(ctx, root, hits); err != nil {
		return nil, err
	}
	h.big = big
	if err := h.diffAll(ctx, root, hits); err != nil {
		return nil, err
	}
	fs := h.findings(hits, h.stash(tips), index, opt.Since)
	return fs, h.messages(ctx, root, fs)
}

// listBlobs lists every blob of the object store, those larger than
// wholeLimit, and their total size.
func listBlobs(ctx context.Context, root string) ([]string, map[string]bool, int64, error) {
	list, err := gitOutput(ctx, root, "cat-file", "--batch-all-objects", "--unordered",
		"--batch-check=%(objectname) %(objecttype) %(objectsize)")
	if err != nil {
		return nil, nil, 0, err
	}
	var blobs []string
	big := map[string]bool{}
	var total int64
	for _, line := range strings.Split(string(list), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[1] == "blob" {
			blobs = append(blobs, f[0])
			n, _ := strconv.ParseInt(f[2], 10, 64)
			total += n
			if n > int64(wholeLimit) {
				big[f[0]] = true
			}
		}
	}
	return blobs, big, total, nil
}

// scanBlobs scans the blobs and returns the location-free findings of each
// matching one (never the data). git inflates on one core; the matcher and
// the rules run on the others. A blob larger than wholeLimit is cut into
// overlapping windows (each a job); the bytes held by queued and running
// jobs stay within a budget, whatever the number of cores.
func scanBlobs(ctx context.Context, root string, m *Matcher, blobs []string, total int64, progress func(done, total int64)) (map[string][]Finding, error) {
	hits := make(map[string][]Finding)
	var mu sync.Mutex
	type job struct {
		oid  string
		w    part
		held int // bytes of the budget it holds
	}
	jobs := make(chan job, 2*runtime.GOMAXPROCS(0))
	held := newBudget(historyBudget)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if fs := m.scanWindow(j.w, Finding{Blob: j.oid}); len(fs) > 0 {
					mu.Lock()
					hits[j.oid] = append(hits[j.oid], fs...)
					mu.Unlock()
				}
				clear(j.w.data) // blob contents may hold secrets
				held.release(j.held)
			}
		}()
	}
	var done int64
	send := func(oid string, w part) {
		n := held.acquire(len(w.data))
		w.data = bytes.Clone(w.data)
		jobs <- job{oid, w, n}
		if progress != nil {
			done += int64(w.fresh)
			progress(done, total)
		}
	}
	var winBuf []byte
	err := catBlobs(ctx, root, blobs, func(oid string, data []byte) {
		send(oid, part{data: data, hi: len(data), fresh: len(data)})
	}, func(oid string, r io.Reader, _ int64) error {
		if winBuf == nil {
			winBuf = make([]byte, chunkSize+3*m.overlap())
		}
		return m.windows(r, winBuf, func(w part) error {
			send(oid, w)
			return nil
		})
	})
	close(jobs)
	wg.Wait()
	return hits, err
}

// stashTips lists the stash commits: every entry of refs/stash's reflog.
func stashTips(ctx context.Context, root string) (map[string]bool, error) {
	tips := make(map[string]bool)
	if _, err := gitOutput(ctx, root, "rev-parse", "--verify", "--quiet", "refs/stash"); err == nil {
		b, err := gitOutput(ctx, root, "log", "-g", "--format=%H", "refs/stash")
		if err != nil {
			return nil, err
		}
		for _, h := range strings.Fields(string(b)) {
			tips[h] = true
		}
	}
	return tips, nil
}

// intro is a commit introducing a blob at a path; from are the blobs at
// that path in the commit's parents (the old path's, for a rename; the
// zero id where the parent had none).
type intro struct {
	commit, path string
	from         []string
}

// commitMeta is what a finding says of its commit.
type commitMeta struct {
	parents       []string
	author, email string
	date          time.Time
}

// history is what git says of the matching blobs: the commits that
// introduce each at a path, and those commits; for the blobs no commit
// introduced (orphans), a path each is reachable at, if any.
type history struct {
	intros  map[string][]intro // blob → introductions
	commits map[string]commitMeta
	orphans map[string]bool
	reach   map[string]string    // orphan blob → a path it is reachable at
	big     map[string]bool      // blobs larger than wholeLimit (not diffed)
	hunks   map[[2]string][]hunk // (parent's blob, blob) → the lines the diff adds
}

// readHistory reads the introductions of the blobs of hits from
// `git log --all --reflog -c --raw` (commits newer than since, if set).
func readHistory(ctx context.Context, root, since string, hits map[string][]Finding) (*history, error) {
	args := []string{"-c", "core.quotePath=false", "log", "--all", "--reflog", "--root", "-c", "--raw",
		"--find-renames", "--no-abbrev", "--no-textconv", "--no-ext-diff", "--format=%x1e%H%x1f%P%x1f%an%x1f%ae%x1f%aI"}
	if since != "" {
		args = append(args, "--since="+since)
	}
	h := &history{intros: make(map[string][]intro), commits: make(map[string]commitMeta)}
	var cur string
	err := gitLines(ctx, root, args, func(line string) error {
		switch {
		case strings.HasPrefix(line, "\x1e"):
			f := strings.Split(line[1:], "\x1f")
			if len(f) != 5 {
				return fmt.Errorf("scan: unexpected git log line")
			}
			d, _ := time.Parse(time.RFC3339, f[4])
			cur = f[0]
			h.commits[cur] = commitMeta{parents: strings.Fields(f[1]), author: f[2], email: f[3], date: d}
		case strings.HasPrefix(line, ":"):
			blob, path, from, ok := parseRaw(line)
			if ok && cur != "" {
				if _, hit := hits[blob]; hit {
					h.intros[blob] = append(h.intros[blob], intro{cur, path, from})
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return h, nil
}

// stash returns the commits of the stash entries tips: each entry and its
// parents but the first (its index and untracked commits).
func (h *history) stash(tips map[string]bool) map[string]bool {
	stash := make(map[string]bool)
	for c := range tips {
		stash[c] = true
		if md, ok := h.commits[c]; ok {
			for _, p := range md.parents[min(1, len(md.parents)):] {
				stash[p] = true
			}
		}
	}
	return stash
}

// reachOrphans finds the blobs of hits no commit introduced, and a path
// each is reachable at from a ref or reflog, if any.
func (h *history) reachOrphans(ctx context.Context, root string, hits map[string][]Finding) error {
	h.orphans, h.reach = make(map[string]bool), make(map[string]string)
	for oid := range hits {
		if len(h.intros[oid]) == 0 {
			h.orphans[oid] = true
		}
	}
	if len(h.orphans) == 0 {
		return nil
	}
	return gitLines(ctx, root, []string{"-c", "core.quotePath=false", "rev-list", "--all", "--reflog", "--objects"}, func(line string) error {
		oid, path, _ := strings.Cut(line, " ")
		if h.orphans[oid] {
			if _, ok := h.reach[oid]; !ok {
				h.reach[oid] = path
			}
		}
		return nil
	})
}

// findings attributes the findings of each matching blob: to the commits
// that introduce it (in a stash or not), each finding only where its line
// is one the commit added (see addedLines), else to the path it is
// reachable at (unless since is set: then it came before), else, unless the
// index holds it (Options.Staged reports those), to no place at all.
func (h *history) findings(hits map[string][]Finding, stash map[string]bool, index map[string][]string, since string) []Finding {
	var out []Finding
	for oid, fs := range hits {
		for _, in := range h.intros[oid] {
			md := h.commits[in.commit]
			where := WhereCommit
			if stash[in.commit] {
				where = WhereStash
			}
			added := h.addedLines(in.from, oid)
			for _, f := range fs {
				frag, ok := added(f.Line)
				if !ok {
					continue // the line was there before this commit: reported where it was added
				}
				f.Where, f.Commit, f.Author, f.Email, f.AuthorDate, f.Path, f.fragLine = where, in.commit, md.author, md.email, md.date, in.path, frag
				out = append(out, f)
			}
		}
		if !h.orphans[oid] {
			continue
		}
		if path, ok := h.reach[oid]; ok {
			if since != "" {
				continue // introduced before Since
			}
			// Reachable but introduced by no commit (e.g. a tag of a blob or tree).
			for _, f := range fs {
				f.Where, f.Path = WhereCommit, path
				out = append(out, f)
			}
			continue
		}
		if _, ok := index[oid]; ok {
			continue // staged only: reported by Options.Staged
		}
		for _, f := range fs {
			f.Where = WhereUnreachable
			out = append(out, f)
		}
	}
	return out
}

// messages sets the commit message of the findings (as gitleaks reports
// it: the subject, then a blank line and the body when there is one), from
// one git log of their commits.
func (h *history) messages(ctx context.Context, root string, fs []Finding) error {
	var commits []string
	seen := map[string]bool{}
	for _, f := range fs {
		if f.Commit != "" && !seen[f.Commit] {
			seen[f.Commit] = true
			commits = append(commits, f.Commit)
		}
	}
	if len(commits) == 0 {
		return nil
	}
	b, err := gitOutput(ctx, root, append([]string{"log", "--no-walk=unsorted", "--format=%H%x1f%s%x1f%b%x00"}, commits...)...)
	if err != nil {
		return err
	}
	msg := map[string]string{}
	for _, rec := range strings.Split(string(b), "\x00") {
		f := strings.SplitN(strings.TrimLeft(rec, "\n"), "\x1f", 3)
		if len(f) != 3 {
			continue
		}
		m := f[1]
		if body := strings.TrimRight(f[2], " \t\n"); body != "" {
			m += "\n\n" + body
		}
		msg[f[0]] = m
	}
	for i := range fs {
		fs[i].Message = msg[fs[i].Commit]
	}
	return nil
}

// parseRaw parses a `--raw` line of git log, ordinary (":m m sha sha S\tpath",
// "... R100\told\tnew" for a rename) or combined ("::m m m sha sha sha
// SS\tpath"), and returns the resulting blob, its path and the parents' blobs
// at that path; ok is false for deletions and non-blobs.
func parseRaw(line string) (blob, path string, from []string, ok bool) {
	meta, path, found := strings.Cut(line, "\t")
	if !found {
		return "", "", nil, false
	}
	n := 0
	for n < len(meta) && meta[n] == ':' {
		n++
	}
	f := strings.Fields(meta[n:])
	// n parents: n+1 modes, n+1 object ids, status.
	if len(f) != 2*(n+1)+1 {
		return "", "", nil, false
	}
	mode, blob := f[n], f[2*n+1]
	if !strings.HasPrefix(mode, "100") && mode != "120000" || strings.Trim(blob, "0") == "" {
		return "", "", nil, false
	}
	if st := f[2*n+2]; n == 1 && (st[0] == 'R' || st[0] == 'C') {
		_, path, _ = strings.Cut(path, "\t") // "old\tnew"
	}
	for i := range n {
		from = append(from, f[n+1+i])
		if pm := f[i]; !strings.HasPrefix(pm, "100") && pm != "120000" {
			from[i] = zeroOID // a directory or submodule before: nothing to diff
		}
	}
	return blob, unquote(path), from, true
}

// unquote undoes git's C-style quoting of unusual paths.
func unquote(p string) string {
	if len(p) >= 2 && p[0] == '"' {
		if s, err := strconv.Unquote(p); err == nil {
			return s
		}
	}
	return p
}
