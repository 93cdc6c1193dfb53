package scan

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rekeyhq/rekey/internal/gitsafe"
)

// Options selects what ScanRepo looks at besides the worktree.
type Options struct {
	// History scans the whole object store: every blob, whether reachable
	// from a branch, tag, reflog or stash, or from nothing at all.
	History bool
	// Staged scans the blobs in the index.
	Staged bool
	// Since, if set, limits history attribution to commits newer than this
	// date (any form `git log --since` accepts). Blobs introduced only by
	// older commits are not reported; unreachable blobs, having no date,
	// still are.
	Since string
	// Ignore, if not nil, skips worktree paths (slash-separated, relative to
	// the repository root), e.g. the .env rekey writes when git ignores it.
	// It does not apply to the index or history: a committed .env is a leak.
	Ignore func(path string) bool
	// Progress, if not nil, is called as History reads the object store,
	// with the bytes of blobs read so far and in all.
	Progress func(done, total int64)
}

// ScanRepo scans the git repository containing dir: its worktree (always,
// from the repository's top level, skipping .git), its index (opt.Staged)
// and its object store (opt.History).
//
// History works on objects, not patches: every blob of the object store is
// listed (git cat-file --batch-all-objects) and read through one
// `git cat-file --batch` process, then each matching blob is attributed to
// the commits that introduce it at a path, from `git log --all --reflog -c
// --raw`: for an ordinary commit, a path whose blob differs from its parent;
// for a merge, a path whose blob differs from every parent (so content added
// while resolving a merge is attributed to the merge commit, which scanners
// built on `git log -p` miss); for a root commit, every path. Commits of a
// stash entry (refs/stash and its reflog: the worktree commit and its index
// and untracked parents) give Where "stash". A matching blob reachable from
// no ref, reflog, stash or the index gives Where "unreachable", with empty
// Commit and Path and its object id in Blob. A blob staged in the index but
// in no commit is reported only by Staged.
//
// Findings are sorted: worktree, index, commit, stash, unreachable; then by
// author date, commit, path, line.
func ScanRepo(ctx context.Context, dir string, m *Matcher, opt Options) ([]Finding, error) {
	if _, err := exec.LookPath("git"); err != nil {
		return nil, fmt.Errorf("scan: git not found: %w", err)
	}
	top, err := gitOutput(ctx, dir, "rev-parse", "--show-toplevel")
	if err != nil {
		return nil, fmt.Errorf("scan: %s is not in a git worktree: %w", dir, err)
	}
	root := strings.TrimRight(string(top), "\n")

	out, err := ScanDir(ctx, root, m, opt.Ignore)
	if err != nil {
		return nil, err
	}

	var index map[string][]string // blob → paths in the index
	if opt.Staged || opt.History {
		index, err = indexBlobs(ctx, root)
		if err != nil {
			return nil, err
		}
	}
	if opt.Staged && len(index) > 0 {
		oids := make([]string, 0, len(index))
		for oid := range index {
			oids = append(oids, oid)
		}
		err := catBlobs(ctx, root, oids, func(oid string, data []byte) {
			for _, p := range index[oid] {
				out = append(out, m.scanData(data, Finding{Where: WhereIndex, Blob: oid, Path: p})...)
			}
		}, func(oid string, r io.Reader, size int64) error {
			fs, err := m.scanReader(r, size, Finding{Where: WhereIndex, Blob: oid})
			for _, p := range index[oid] {
				for _, f := range fs {
					f.Path = p
					out = append(out, f)
				}
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	if opt.History {
		fs, err := scanHistory(ctx, root, m, opt, index)
		if err != nil {
			return nil, err
		}
		out = append(out, fs...)
	}
	out = m.filterLocations(out)
	sortFindings(out)
	return out, nil
}

func scanHistory(ctx context.Context, root string, m *Matcher, opt Options, index map[string][]string) ([]Finding, error) {
	// 1. Every blob of the object store.
	list, err := gitOutput(ctx, root, "cat-file", "--batch-all-objects", "--unordered",
		"--batch-check=%(objectname) %(objecttype) %(objectsize)")
	if err != nil {
		return nil, err
	}
	var blobs []string
	var total, done int64
	for _, line := range strings.Split(string(list), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[1] == "blob" {
			blobs = append(blobs, f[0])
			n, _ := strconv.ParseInt(f[2], 10, 64)
			total += n
		}
	}
	// 2. Scan them; keep only location-free findings (never the data).
	// git inflates on one core; the matcher and the rules run on the others.
	// A blob larger than wholeLimit is cut into overlapping windows (each a
	// job); the bytes held by queued and running jobs stay within a budget,
	// whatever the number of cores.
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
	send := func(oid string, w part) {
		n := held.acquire(len(w.data))
		w.data = bytes.Clone(w.data)
		jobs <- job{oid, w, n}
		if opt.Progress != nil {
			done += int64(w.fresh)
			opt.Progress(done, total)
		}
	}
	var winBuf []byte
	err = catBlobs(ctx, root, blobs, func(oid string, data []byte) {
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
	if err != nil || len(hits) == 0 {
		return nil, err
	}

	// 3. Stash commits: every entry of refs/stash's reflog and its parents.
	stashTips := make(map[string]bool)
	if _, err := gitOutput(ctx, root, "rev-parse", "--verify", "--quiet", "refs/stash"); err == nil {
		b, err := gitOutput(ctx, root, "log", "-g", "--format=%H", "refs/stash")
		if err != nil {
			return nil, err
		}
		for _, h := range strings.Fields(string(b)) {
			stashTips[h] = true
		}
	}

	// 4. Attribute: the commits that introduce each matching blob at a path.
	args := []string{"-c", "core.quotePath=false", "log", "--all", "--reflog", "--root", "-c", "--raw",
		"--no-renames", "--no-abbrev", "--no-textconv", "--no-ext-diff", "--format=%x1e%H%x1f%P%x1f%an <%ae>%x1f%aI"}
	if opt.Since != "" {
		args = append(args, "--since="+opt.Since)
	}
	type intro struct {
		commit, path string
	}
	intros := make(map[string][]intro) // blob → introductions
	type meta struct {
		parents []string
		author  string
		date    time.Time
	}
	commits := make(map[string]meta)
	var cur string
	err = gitLines(ctx, root, args, func(line string) error {
		switch {
		case strings.HasPrefix(line, "\x1e"):
			f := strings.Split(line[1:], "\x1f")
			if len(f) != 4 {
				return fmt.Errorf("scan: unexpected git log line")
			}
			d, _ := time.Parse(time.RFC3339, f[3])
			cur = f[0]
			commits[cur] = meta{parents: strings.Fields(f[1]), author: f[2], date: d}
		case strings.HasPrefix(line, ":"):
			blob, path, ok := parseRaw(line)
			if ok && cur != "" {
				if _, hit := hits[blob]; hit {
					intros[blob] = append(intros[blob], intro{cur, path})
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	stash := make(map[string]bool)
	for h := range stashTips {
		stash[h] = true
		if md, ok := commits[h]; ok {
			for _, p := range md.parents[min(1, len(md.parents)):] {
				stash[p] = true
			}
		}
	}

	// 5. Reachability, for the blobs no commit introduced.
	var orphans = make(map[string]bool)
	for oid := range hits {
		if len(intros[oid]) == 0 {
			orphans[oid] = true
		}
	}
	reach := make(map[string]string) // orphan blob → a path it is reachable at
	if len(orphans) > 0 {
		err = gitLines(ctx, root, []string{"-c", "core.quotePath=false", "rev-list", "--all", "--reflog", "--objects"}, func(line string) error {
			oid, path, _ := strings.Cut(line, " ")
			if orphans[oid] {
				if _, ok := reach[oid]; !ok {
					reach[oid] = path
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}

	var out []Finding
	for oid, fs := range hits {
		for _, in := range intros[oid] {
			md := commits[in.commit]
			where := WhereCommit
			if stash[in.commit] {
				where = WhereStash
			}
			for _, f := range fs {
				f.Where, f.Commit, f.Author, f.AuthorDate, f.Path = where, in.commit, md.author, md.date, in.path
				out = append(out, f)
			}
		}
		if !orphans[oid] {
			continue
		}
		if path, ok := reach[oid]; ok {
			if opt.Since != "" {
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
	return out, nil
}

// parseRaw parses a `--raw` line of git log, ordinary (":m m sha sha S\tpath")
// or combined ("::m m m sha sha sha SS\tpath"), and returns the resulting blob
// and its path; ok is false for deletions and non-blobs.
func parseRaw(line string) (blob, path string, ok bool) {
	meta, path, found := strings.Cut(line, "\t")
	if !found {
		return "", "", false
	}
	n := 0
	for n < len(meta) && meta[n] == ':' {
		n++
	}
	f := strings.Fields(meta[n:])
	// n parents: n+1 modes, n+1 object ids, status.
	if len(f) != 2*(n+1)+1 {
		return "", "", false
	}
	mode, blob := f[n], f[2*n+1]
	if !strings.HasPrefix(mode, "100") && mode != "120000" || strings.Trim(blob, "0") == "" {
		return "", "", false
	}
	return blob, unquote(path), true
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

// indexBlobs maps each blob staged in the index to its paths.
func indexBlobs(ctx context.Context, root string) (map[string][]string, error) {
	b, err := gitOutput(ctx, root, "ls-files", "-s", "-z")
	if err != nil {
		return nil, err
	}
	idx := make(map[string][]string)
	for _, rec := range strings.Split(string(b), "\x00") {
		meta, path, ok := strings.Cut(rec, "\t")
		if !ok {
			continue
		}
		f := strings.Fields(meta) // mode oid stage
		if len(f) != 3 || f[0] == "160000" {
			continue
		}
		idx[f[1]] = append(idx[f[1]], path)
	}
	return idx, nil
}

// catBlobs reads the given objects through one `git cat-file --batch`
// process. A blob of at most wholeLimit bytes is given whole to small (data
// is reused, and zeroed, after small returns); a larger one is given to
// large as a reader of its content, which large need not read to its end.
// Missing objects are skipped.
func catBlobs(ctx context.Context, root string, oids []string, small func(oid string, data []byte), large func(oid string, r io.Reader, size int64) error) error {
	if len(oids) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Bound git's memory: its default delta cache (96 MiB) and pack windows
	// dominate the scan's peak RSS; these limits cost no speed measured here.
	// core.bigFileThreshold: git streams a packed blob only above it (else
	// it inflates the whole blob in memory first: 400 MiB for a 400 MB
	// blob); a blob stored as a delta is still inflated whole by git.
	cmd := gitCmd(ctx, root, []string{"-c", "core.deltaBaseCacheLimit=16m", "-c", "core.packedGitWindowSize=16m", "-c", "core.packedGitLimit=64m",
		"-c", "core.bigFileThreshold=" + strconv.Itoa(wholeLimit), "cat-file", "--batch"})
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() {
		w := bufio.NewWriter(stdin)
		for _, oid := range oids {
			if _, err := w.WriteString(oid + "\n"); err != nil {
				break
			}
		}
		_ = w.Flush()
		_ = stdin.Close()
	}()
	r := bufio.NewReaderSize(stdout, 1<<16)
	var buf []byte
	readErr := func() error {
		for {
			hdr, err := r.ReadString('\n')
			if err == io.EOF && hdr == "" {
				return nil
			}
			if err != nil {
				return err
			}
			f := strings.Fields(hdr)
			if len(f) == 2 && f[1] == "missing" {
				continue
			}
			if len(f) != 3 {
				return fmt.Errorf("scan: unexpected git cat-file header")
			}
			size, err := strconv.Atoi(f[2])
			if err != nil {
				return fmt.Errorf("scan: unexpected git cat-file header")
			}
			if size > wholeLimit {
				lr := &io.LimitedReader{R: r, N: int64(size)}
				if f[1] == "blob" {
					if err := large(f[0], lr, int64(size)); err != nil {
						return err
					}
				}
				if _, err := io.Copy(io.Discard, lr); err != nil {
					return err
				}
				if c, err := r.ReadByte(); err != nil || c != '\n' {
					return fmt.Errorf("scan: unexpected git cat-file output")
				}
				if err := ctx.Err(); err != nil {
					return err
				}
				continue
			}
			if cap(buf) < size+1 {
				clear(buf)
				buf = make([]byte, size+1)
			}
			data := buf[:size+1]
			if _, err := io.ReadFull(r, data); err != nil {
				return err
			}
			data = data[:size] // drop the trailing newline
			if f[1] == "blob" {
				small(f[0], data)
			}
			clear(data)
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}()
	clear(buf)
	if readErr != nil {
		cancel()
		_ = cmd.Wait()
		return fmt.Errorf("scan: git cat-file: %w", readErr)
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("scan: git cat-file: %w: %s", err, firstLine(stderr.String()))
	}
	return nil
}

// gitCmd runs git on a repository rekey does not control (internal/gitsafe:
// no repository setting starts a program, no key material in its environment).
func gitCmd(ctx context.Context, root string, args []string) *exec.Cmd {
	return gitsafe.Command(ctx, root, args...)
}

func gitOutput(ctx context.Context, root string, args ...string) ([]byte, error) {
	cmd := gitCmd(ctx, root, args)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git %s: %w: %s", args[0], err, firstLine(stderr.String()))
	}
	return b, nil
}

// gitLines streams a git command's stdout line by line.
func gitLines(ctx context.Context, root string, args []string, fn func(string) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := gitCmd(ctx, root, args)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var ferr error
	for sc.Scan() {
		if ferr = fn(sc.Text()); ferr != nil {
			break
		}
	}
	if ferr == nil {
		ferr = sc.Err()
	}
	if ferr != nil {
		cancel()
		_ = cmd.Wait()
		return ferr
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git %s: %w: %s", cmdName(args), err, firstLine(stderr.String()))
	}
	return nil
}

func cmdName(args []string) string {
	for i := 0; i < len(args); i++ {
		if args[i] == "-c" {
			i++
			continue
		}
		return args[i]
	}
	return ""
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
