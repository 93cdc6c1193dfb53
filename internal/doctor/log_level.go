package doctor

import (
	"fmt"
	"os"
	"strings"

	"github.com/rekeyhq/rekey/dotenv"
	"github.com/rekeyhq/rekey/internal/config"
)

// isLogLevelKey reports whether key names a log level setting.
func isLogLevelKey(key string) bool {
	k := strings.ToUpper(key)
	return k == "RUST_LOG" || k == "LOG_LEVEL" || strings.HasSuffix(k, "_LOG_LEVEL")
}

// verboseLevel returns "debug" or "trace" when a log filter (RUST_LOG syntax:
// level, or target=level directives separated by commas) enables one.
func verboseLevel(v string) string {
	for _, dir := range strings.Split(strings.ToLower(v), ",") {
		dir = strings.TrimSpace(dir)
		if i := strings.IndexByte(dir, '/'); i >= 0 { // RUST_LOG's "/regex" filter
			dir = dir[:i]
		}
		if i := strings.LastIndexByte(dir, '='); i >= 0 {
			dir = dir[i+1:]
		}
		if dir = strings.TrimSpace(dir); dir == "debug" || dir == "trace" {
			return dir
		}
	}
	return ""
}

// checkLogLevel: the production .env targets (else the environment the
// command was given) do not log at debug or trace.
func (d *run) checkLogLevel() Check {
	const name = "log-level"
	env, ok := d.cfg.Environment("production")
	if !ok {
		var err error
		if env, err = d.Environment(d.cfg); err != nil {
			return warn(name, "skipped: no production environment", "name the production environment \"production\" in rekey.yaml")
		}
	}
	var bad, seen []string
	for _, t := range env.Targets {
		if t.Type != config.TargetDotenv {
			continue
		}
		data, err := os.ReadFile(t.Path)
		if err != nil {
			return warn(name, "skipped: cannot read "+d.rel(t.Path), "create it, or fix its path in rekey.yaml")
		}
		f, err := dotenv.Parse(d.rel(t.Path), data)
		if err != nil {
			return warn(name, "skipped: "+d.rel(t.Path)+" does not parse", "run `rekey status` to see the error")
		}
		for _, k := range f.Keys() {
			if !isLogLevelKey(k) {
				continue
			}
			v, _ := f.Get(k)
			seen = append(seen, k)
			if lvl := verboseLevel(v); lvl != "" {
				bad = append(bad, fmt.Sprintf("%s in %s enables %s", k, d.rel(t.Path), lvl))
			}
		}
	}
	if len(bad) > 0 {
		return fail(name, strings.Join(bad, "; "), "set RUST_LOG=info (LOG_LEVEL=info) in production: debug logs leak secrets")
	}
	if len(seen) == 0 {
		return pass(name, "no log level set in "+env.Name)
	}
	return pass(name, "no debug or trace logging in "+env.Name+": "+strings.Join(seen, ", "))
}
