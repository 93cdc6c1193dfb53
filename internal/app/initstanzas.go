package app

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/rekeyhq/rekey/internal/config"
)

// This file finds what `rekey init` fills its commented stanzas with (see
// config.Stanzas): the service to restart (a systemd unit or a compose
// service named after the project), the database URL for a postgres
// check, the application's port for an http check, and (--detect-columns,
// initpostgres.go) the encrypted columns.

// SystemUnitDirs are where init looks for a system unit named after the
// project (a variable for tests).
var SystemUnitDirs = []string{"/etc/systemd/system"}

// composeFiles are the compose file names init looks for in the project.
var composeFiles = []string{"compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml"}

// suggestions is what init found for the stanzas.
func (r *initRun) suggestions(ctx context.Context) (config.Suggestions, error) {
	var s config.Suggestions
	project := filepath.Base(r.projDir)
	r.findService(&s, project)
	s.DatabaseURL = r.databaseURLName()
	for _, k := range []string{"PORT", "APP_PORT", "HTTP_PORT"} {
		if v := r.values[k]; v != "" && strings.Trim(v, "0123456789") == "" && len(v) <= 5 {
			s.Port = v
			break
		}
	}
	if r.o.DetectColumns {
		if err := r.detectColumns(ctx, &s); err != nil {
			return s, err
		}
	}
	return s, nil
}

// findService looks for a systemd unit (system, then user) and then a
// compose service named after the project.
func (r *initRun) findService(s *config.Suggestions, project string) {
	name := config.ServiceName(project)
	if name == "" {
		return
	}
	unit := project + ".service"
	dirs := slices.Clone(SystemUnitDirs)
	user := r.s.Getenv("XDG_CONFIG_HOME")
	if !filepath.IsAbs(user) {
		if h := r.s.Getenv("HOME"); filepath.IsAbs(h) {
			user = filepath.Join(h, ".config")
		}
	}
	for _, d := range dirs {
		if p := filepath.Join(d, unit); fileExists(p) {
			s.ServiceName, s.Systemd, s.Found = name, unit, p
			return
		}
	}
	if filepath.IsAbs(user) {
		if p := filepath.Join(user, "systemd", "user", unit); fileExists(p) {
			s.ServiceName, s.SystemdUser, s.Systemd, s.Found = name, true, unit, p
			return
		}
	}
	envBase := filepath.Base(r.envPath)
	for _, f := range composeFiles {
		data, err := os.ReadFile(filepath.Join(r.projDir, f))
		if err != nil {
			continue
		}
		var doc struct {
			Services map[string]struct {
				EnvFile any `yaml:"env_file"`
			} `yaml:"services"`
		}
		if yaml.Unmarshal(data, &doc) != nil {
			continue
		}
		svc := ""
		if _, ok := doc.Services[project]; ok {
			svc = project
		} else {
			// The service that reads the .env init inventories.
			var names []string
			for n, sv := range doc.Services {
				if readsEnvFile(sv.EnvFile, envBase) {
					names = append(names, n)
				}
			}
			slices.Sort(names)
			if len(names) > 0 {
				svc = names[0]
			}
		}
		if svc != "" && config.ServiceName(svc) == svc {
			s.ServiceName, s.ComposeFile, s.ComposeService, s.Found = svc, f, svc, f
			return
		}
	}
}

// readsEnvFile reports whether a compose env_file (a path, a list of
// paths or of {path: ...}) names a file called base.
func readsEnvFile(v any, base string) bool {
	switch v := v.(type) {
	case string:
		return filepath.Base(v) == base
	case []any:
		for _, x := range v {
			if m, ok := x.(map[string]any); ok {
				x = m["path"]
			}
			if readsEnvFile(x, base) {
				return true
			}
		}
	}
	return false
}

// databaseURLName is the secret or derived value holding the application's
// PostgreSQL URL: DATABASE_URL when it is one, else the first such key.
func (r *initRun) databaseURLName() string {
	var names []string
	for _, c := range r.classes {
		v := r.values[c.Key]
		if (c.Secret || c.Derived != nil) && (strings.HasPrefix(v, "postgres://") || strings.HasPrefix(v, "postgresql://")) {
			names = append(names, c.Key)
		}
	}
	if slices.Contains(names, "DATABASE_URL") {
		return "DATABASE_URL"
	}
	for _, n := range names {
		if !strings.Contains(strings.ToUpper(n), "ADMIN") {
			return n
		}
	}
	return ""
}

// commentBlocks are the comment blocks of the rekey.yaml init writes: those of
// the file it adds to (kept as they are), and the stanzas of what the file
// does not have yet.
func (r *initRun) commentBlocks(ctx context.Context) (config.Comments, error) {
	var old config.Comments
	if r.existing != nil && r.cfg != nil && r.cfg.Raw != nil {
		var lost int
		old, lost = config.KeptComments(r.cfg.Raw)
		if lost > 0 {
			r.s.warnf("%s is rewritten without %d of its comment lines (rekey keeps those at the end of a secret and of the file)", filepath.Base(r.cfgPath), lost)
		}
	}
	s, err := r.suggestions(ctx)
	if err != nil {
		return old, err
	}
	r.found = s
	fresh := config.Stanzas(r.cfg, s)
	out := config.Comments{Secrets: map[string][]string{}, Trailer: old.Trailer}
	if len(out.Trailer) == 0 {
		out.Trailer = fresh.Trailer
	}
	for name, b := range fresh.Secrets {
		out.Secrets[name] = b
	}
	for name, b := range old.Secrets {
		out.Secrets[name] = b
	}
	return out, nil
}

// describeFound says what init found for the stanzas, for its summary.
func describeFound(s config.Suggestions) []string {
	var out []string
	if s.ServiceName != "" {
		out = append(out, "service "+s.ServiceName+" ("+s.Found+")")
	}
	if s.DatabaseURL != "" {
		out = append(out, "a postgres check on "+s.DatabaseURL)
	}
	for _, k := range slices.Sorted(maps.Keys(s.Columns)) {
		out = append(out, "columns encrypted with "+k+": "+strings.Join(s.Columns[k].Columns, ", "))
	}
	return out
}

// stanzaNames lists the commented stanzas among cm's blocks.
func stanzaNames(cm config.Comments) []string {
	has := map[string]bool{}
	see := func(ls []string) {
		for _, l := range ls {
			if name, ok := strings.CutPrefix(strings.TrimSpace(l), "# "); ok && strings.HasSuffix(name, ":") {
				has[strings.TrimSuffix(name, ":")] = true
			}
		}
	}
	see(cm.Trailer)
	for _, b := range cm.Secrets {
		see(b)
	}
	var out []string
	for _, n := range []string{"services", "checks", "sessions", "reencrypt"} {
		if has[n] {
			out = append(out, n)
		}
	}
	return out
}
