package pgcluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
)

// A process that starts many clusters (the tests of cmd/rekey start one
// per test) can run initdb once per server binary directory and copy its
// output for each cluster instead: a copy takes a sixth of initdb's time.
// The clusters of one template share its superuser password (random, never
// written anywhere but the template's own catalog). Templates are opt-in
// (UseTemplates) so that a process that starts one cluster leaves no
// template behind; RemoveTemplates removes them, and Start's sweep of stale
// directories removes those of a process that died.

var (
	tmplMu      sync.Mutex
	tmplEnabled bool
	templates   = map[string]*template{} // by binDir
)

// template is the output of one initdb, never started.
type template struct {
	dir, data, password string
}

// UseTemplates makes every later Start of this process copy a template made
// by one initdb per server binary directory. Call RemoveTemplates when the
// process is done with clusters.
func UseTemplates() {
	tmplMu.Lock()
	tmplEnabled = true
	tmplMu.Unlock()
}

// RemoveTemplates removes the templates this process made.
func RemoveTemplates() {
	tmplMu.Lock()
	defer tmplMu.Unlock()
	for k, t := range templates {
		os.RemoveAll(t.dir)
		delete(templates, k)
	}
}

// fromTemplate fills c's data directory from the template of c's binaries
// (made on first use) and takes its superuser password. It reports false
// when templates are off: the caller runs initdb itself.
func (c *Cluster) fromTemplate() (bool, error) {
	tmplMu.Lock()
	defer tmplMu.Unlock()
	if !tmplEnabled {
		return false, nil
	}
	t := templates[c.binDir]
	if t == nil {
		dir, err := makeDir(c.cred)
		if err != nil {
			return false, err
		}
		tc := &Cluster{Dir: dir, SuperUser: c.SuperUser, binDir: c.binDir, dataDir: filepath.Join(dir, "data"), cred: c.cred}
		if tc.SuperPassword, err = randomPassword(); err != nil {
			os.RemoveAll(dir)
			return false, err
		}
		if err := tc.initdb(); err != nil {
			os.RemoveAll(dir)
			return false, err
		}
		t = &template{dir: dir, data: tc.dataDir, password: tc.SuperPassword}
		templates[c.binDir] = t
	}
	// cp -a keeps the server user's ownership and the modes (0700, 0600).
	cmd := exec.Command("cp", "-a", "--", t.data, c.dataDir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	if out, err := cmd.CombinedOutput(); err != nil {
		return false, fmt.Errorf("pgtest: copy the initdb template: %w: %s", err, out)
	}
	c.SuperPassword = t.password
	return true, nil
}
