package doctor

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// maxTrackedFile is the size above which tracked-values does not read a file.
const maxTrackedFile = 10 << 20

// minSearchLen is the shortest value tracked-values searches for: shorter
// ones would match by chance (and are reported as weak by strength).
const minSearchLen = 8

// checkTrackedValues: no managed value, old or current, is in a file tracked
// by git (the .env targets git ignores aside).
func (d *run) checkTrackedValues(vals []storedValue) Check {
	const name = "tracked-values"
	if d.git == nil {
		return d.noGit(name)
	}
	skip := map[string]bool{} // .env targets that git ignores
	for _, t := range d.targets {
		if rel, in := d.git.inside(t.Path); in {
			if ign, err := d.git.ignored(rel); err == nil && ign {
				skip[rel] = true
			}
		}
	}
	out, err := d.git.run(d.git.root, "ls-files", "-z", "--cached")
	if err != nil {
		return warn(name, "skipped: "+err.Error(), "check that git works in "+d.git.root)
	}
	var search []storedValue
	short := 0
	for _, v := range vals {
		if v.value.Len() >= minSearchLen {
			search = append(search, v)
		} else if v.value.Len() > 0 {
			short++
		}
	}
	files, big := 0, 0
	found := map[string]bool{}
	var hits []string
	for _, rel := range strings.Split(string(out), "\x00") {
		if rel == "" || skip[rel] {
			continue
		}
		p := filepath.Join(d.git.root, filepath.FromSlash(rel))
		fi, err := os.Lstat(p)
		if err != nil || !fi.Mode().IsRegular() {
			continue // deleted in the work tree, a symbolic link or a submodule
		}
		if fi.Size() > maxTrackedFile {
			big++
			continue
		}
		data, err := readFileLimit(p, maxTrackedFile)
		if err != nil {
			continue
		}
		files++
		for _, v := range search {
			if v.in(data) {
				h := rel + ": " + v.label()
				if !found[h] {
					found[h] = true
					hits = append(hits, h)
				}
			}
		}
		clear(data)
	}
	if len(hits) > 0 {
		return fail(name, "managed values in tracked files: "+strings.Join(hits, "; "),
			"rotate each named secret (`rekey rotate NAME --emergency`, user-managed: at the provider) and remove the value from the file")
	}
	detail := fmt.Sprintf("%d values searched in %d tracked files", len(search), files)
	if big > 0 {
		detail += fmt.Sprintf(" (%d files over 10 MB skipped)", big)
	}
	if short > 0 {
		detail += fmt.Sprintf(" (%d values under %d bytes not searched)", short, minSearchLen)
	}
	return pass(name, detail)
}

// readFileLimit reads at most limit+1 bytes of the file at p.
func readFileLimit(p string, limit int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(bufio.NewReader(io.LimitReader(f, limit+1)))
}
