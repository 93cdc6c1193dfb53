package scan

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"

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
