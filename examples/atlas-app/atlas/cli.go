package atlas

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Usage is the command line of the application (atlas-app).
const Usage = `usage:
  atlas-app [serve] --env-file PATH [--listen ADDR] [--pidfile PATH] [--token-ttl D]
  atlas-app --env-file PATH --seed N
  atlas-app start   --env-file PATH --listen ADDR --pidfile PATH [--log PATH] [--token-ttl D] [--timeout D]
  atlas-app restart --env-file PATH --listen ADDR --pidfile PATH [--log PATH] [--token-ttl D] [--timeout D]
  atlas-app reload  --pidfile PATH [--timeout D]
  atlas-app stop    --pidfile PATH [--timeout D]
  atlas-app status  --pidfile PATH
  atlas-app smoke   --url http://ADDR [--patient ID]

serve     serve the API in the foreground; SIGHUP re-reads the .env (see
          reload), SIGTERM/SIGINT shut down cleanly. --pidfile writes the
          process id there and the outcome of every reload to PATH.status.
start     serve in the background (log to --log, default PIDFILE.log) and
          wait until /health answers 200: exit 0, else the server is
          stopped and the exit status is 1. Already running: exit 0.
restart   reload when running (same process, same listener: no request
          fails), else start. What rekey's services: restart runs.
reload    send SIGHUP and wait for the outcome: exit 0 when the new .env is
          in force, 1 when it is unusable (unparsable, or its DATABASE_URL
          does not log in). After a failed reload the server stays up but
          answers 503 everywhere (/health: {"status":"unavailable"}) until a
          reload succeeds: it never carries on with values that may have
          been rotated away.
stop      SIGTERM, wait for the exit (SIGKILL after --timeout); exit 0 also
          when it was not running.
status    exit 0 when running with a working configuration, else 1.
smoke     log in as the demo user (password ATLAS_DEMO_PASSWORD or the
          default) and read a patient: exit 0 when both work.

No secret value is ever logged or printed.`

// Options holds what the embedding program supplies.
type Options struct {
	// Self is the argv that runs this command line again (start runs
	// Self + "serve" ... in the background): the atlas-app executable.
	Self   []string
	Stdout io.Writer
	Stderr io.Writer
}

// Main runs the command line (args without the program name) and returns
// the exit status: 0 ok, 1 failure, 2 bad usage. ctx ends the foreground
// server (SIGTERM and SIGINT are handled here too).
func Main(ctx context.Context, o Options, args []string) int {
	if o.Stdout == nil {
		o.Stdout = os.Stdout
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	sub := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "serve":
		return cmdServe(ctx, o, args)
	case "start":
		return cmdStart(ctx, o, args, false)
	case "restart":
		return cmdStart(ctx, o, args, true)
	case "reload":
		return cmdReload(ctx, o, args)
	case "stop":
		return cmdStop(ctx, o, args)
	case "status":
		return cmdStatus(o, args)
	case "smoke":
		return cmdSmoke(ctx, o, args)
	case "help":
		fmt.Fprintln(o.Stdout, Usage)
		return 0
	}
	fmt.Fprintf(o.Stderr, "atlas-app: unknown command %q\n%s\n", sub, Usage)
	return 2
}

// serveFlags are the flags of serve, start and restart.
type serveFlags struct {
	envFile, listen, pidfile, logFile string
	seed                              int
	ttl, timeout                      time.Duration
}

func newFlags(name string, o Options) *flag.FlagSet {
	fs := flag.NewFlagSet("atlas-app "+name, flag.ContinueOnError)
	fs.SetOutput(o.Stderr)
	fs.Usage = func() { fmt.Fprintln(o.Stderr, Usage) }
	return fs
}

func (f *serveFlags) register(fs *flag.FlagSet, background bool) {
	fs.StringVar(&f.envFile, "env-file", ".env", "`path` of the .env to read at start and on SIGHUP")
	fs.StringVar(&f.listen, "listen", "127.0.0.1:8080", "`address` to serve on")
	fs.StringVar(&f.pidfile, "pidfile", "", "write the process id to `path` (and reload outcomes to path.status)")
	fs.DurationVar(&f.ttl, "token-ttl", TokenTTL, "lifetime of the tokens /login issues")
	if background {
		fs.StringVar(&f.logFile, "log", "", "log `file` of the background server (default PIDFILE.log)")
		fs.DurationVar(&f.timeout, "timeout", 30*time.Second, "how long to wait for the server")
	} else {
		fs.IntVar(&f.seed, "seed", -1, "create the schema and `N` demo patients, then exit")
	}
}

func parse(fs *flag.FlagSet, args []string, o Options) bool {
	if err := fs.Parse(args); err != nil {
		return false
	}
	if fs.NArg() > 0 {
		fmt.Fprintln(o.Stderr, "atlas-app: unexpected arguments")
		return false
	}
	return true
}

// Status is what a serving process writes to PIDFILE.status after it
// starts listening and after every reload.
type Status struct {
	PID     int    `json:"pid"`
	Addr    string `json:"addr"`
	Reloads int    `json:"reloads"` // reload attempts so far
	OK      bool   `json:"ok"`      // the configuration in force works
	Error   string `json:"error,omitempty"`
}

// StatusPath is the status file beside a pidfile.
func StatusPath(pidfile string) string { return pidfile + ".status" }

// ReadStatus reads the status file beside pidfile.
func ReadStatus(pidfile string) (Status, error) {
	var s Status
	b, err := os.ReadFile(StatusPath(pidfile))
	if err != nil {
		return s, err
	}
	err = json.Unmarshal(b, &s)
	return s, err
}

func writeAtomic(path string, data []byte) error {
	tmp := fmt.Sprintf("%s.tmp%d", path, os.Getpid())
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func cmdServe(ctx context.Context, o Options, args []string) int {
	var f serveFlags
	fs := newFlags("serve", o)
	f.register(fs, false)
	if !parse(fs, args, o) {
		return 2
	}
	log := slog.New(slog.NewTextHandler(o.Stderr, nil))
	cfg, err := LoadEnvFile(f.envFile)
	if err != nil {
		log.Error("configuration", "err", err)
		return 1
	}
	if f.seed >= 0 {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if err := Seed(sctx, cfg, f.seed); err != nil {
			log.Error("seed failed", "err", err)
			return 1
		}
		log.Info("seeded", "patients", f.seed)
		return 0
	}
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		log.Error("listen failed", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := Serve(ctx, ServeOptions{Config: cfg, Listener: ln, Log: log, EnvFile: f.envFile, Pidfile: f.pidfile, TokenTTL: f.ttl}); err != nil {
		log.Error("serve failed", "err", err)
		return 1
	}
	return 0
}

// ServeOptions configures Serve.
type ServeOptions struct {
	Config   *Config
	Listener net.Listener
	Log      *slog.Logger
	// EnvFile is re-read on SIGHUP ("" disables reloading).
	EnvFile string
	// Pidfile, when set, receives the process id; PIDFILE.status the
	// outcome of every reload. Both are removed at a clean exit.
	Pidfile  string
	TokenTTL time.Duration
	// ParentPID, when set, ends the server when that process is gone (a
	// demo that was killed does not leave its app behind).
	ParentPID int
}

// Serve serves the API on ln until ctx is done, then shuts down
// gracefully (in-flight requests get up to 10s). It closes ln. SIGHUP
// reloads the configuration from EnvFile (Server.Reload).
func Serve(ctx context.Context, so ServeOptions) error {
	log := so.Log
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if so.ParentPID == 0 {
		so.ParentPID, _ = strconv.Atoi(os.Getenv(ParentPIDEnv))
	}
	app := NewServer(so.Config, log)
	if so.TokenTTL > 0 {
		app.TokenTTL = so.TokenTTL
	}
	srv := &http.Server{
		Handler:           app.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	st := Status{PID: os.Getpid(), Addr: so.Listener.Addr().String(), OK: true}
	writeStatus := func() {
		if so.Pidfile == "" {
			return
		}
		b, _ := json.Marshal(st)
		if err := writeAtomic(StatusPath(so.Pidfile), b); err != nil {
			log.Error("write status file", "err", err)
		}
	}
	if so.Pidfile != "" {
		writeStatus()
		if err := writeAtomic(so.Pidfile, []byte(strconv.Itoa(st.PID)+"\n")); err != nil {
			so.Listener.Close()
			return fmt.Errorf("write pidfile: %w", err)
		}
		defer func() {
			// Only our own files: a newer server may have replaced them.
			if b, err := os.ReadFile(so.Pidfile); err == nil && strings.TrimSpace(string(b)) == strconv.Itoa(st.PID) {
				os.Remove(so.Pidfile)
				os.Remove(StatusPath(so.Pidfile))
			}
		}()
	}
	hup := make(chan os.Signal, 1)
	if so.EnvFile != "" {
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(so.Listener) }()
	log.Info("listening on " + so.Listener.Addr().String())

	var parentGone <-chan time.Time
	if so.ParentPID > 0 {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		parentGone = t.C
	}
	for done := false; !done; {
		select {
		case err := <-errc:
			return err
		case <-ctx.Done():
			done = true
		case <-parentGone:
			if !Alive(so.ParentPID) {
				log.Info("parent process gone", "pid", so.ParentPID)
				done = true
			}
		case <-hup:
			rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			err := app.Reload(rctx, func() (*Config, error) { return LoadEnvFile(so.EnvFile) })
			cancel()
			st.Reloads++
			st.OK, st.Error = err == nil, ""
			if err != nil {
				st.Error = err.Error()
			}
			writeStatus()
		}
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err == nil {
		log.Info("stopped")
	}
	return err
}

// ParentPIDEnv names an environment variable holding a process id: a
// server started with it exits when that process is gone.
const ParentPIDEnv = "ATLAS_PARENT_PID"

// Alive reports whether process pid exists and is not a zombie.
func Alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true // no procfs: trust kill(0)
	}
	// pid (comm) STATE ...: comm may hold spaces and parentheses.
	if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z' && b[i+2] != 'X'
	}
	return true
}

// ReadPID reads a pidfile; 0 when it is missing or does not name a live process.
func ReadPID(pidfile string) int {
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || !Alive(pid) {
		return 0
	}
	return pid
}

func cmdStart(ctx context.Context, o Options, args []string, restart bool) int {
	name := "start"
	if restart {
		name = "restart"
	}
	var f serveFlags
	fs := newFlags(name, o)
	f.register(fs, true)
	if !parse(fs, args, o) {
		return 2
	}
	if f.pidfile == "" {
		fmt.Fprintf(o.Stderr, "atlas-app %s: --pidfile is required\n", name)
		return 2
	}
	if pid := ReadPID(f.pidfile); pid != 0 {
		if restart {
			return reload(ctx, o, f.pidfile, f.timeout)
		}
		fmt.Fprintf(o.Stdout, "atlas-app: already running (pid %d)\n", pid)
		return 0
	}
	if len(o.Self) == 0 {
		fmt.Fprintln(o.Stderr, "atlas-app: cannot run itself in the background")
		return 1
	}
	logFile := f.logFile
	if logFile == "" {
		logFile = f.pidfile + ".log"
	}
	lf, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintf(o.Stderr, "atlas-app: open log: %v\n", err)
		return 1
	}
	defer lf.Close()
	os.Remove(StatusPath(f.pidfile))
	argv := append(append([]string(nil), o.Self...), "serve", "--env-file", f.envFile, "--listen", f.listen, "--pidfile", f.pidfile, "--token-ttl", f.ttl.String())
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true} // not killed with our process group
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(o.Stderr, "atlas-app: start: %v\n", err)
		return 1
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	fail := func(format string, args ...any) int {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
		fmt.Fprintf(o.Stderr, "atlas-app: "+format+" (log: %s)\n", append(args, logFile)...)
		return 1
	}
	deadline := time.After(f.timeout)
	client := &http.Client{Timeout: 5 * time.Second}
	for {
		select {
		case err := <-exited:
			fmt.Fprintf(o.Stderr, "atlas-app: the server exited at start (%v); log: %s\n", err, logFile)
			return 1
		case <-deadline:
			return fail("the server is not healthy after %s", f.timeout)
		case <-ctx.Done():
			return fail("interrupted")
		case <-time.After(50 * time.Millisecond):
		}
		st, err := ReadStatus(f.pidfile)
		if err != nil || st.PID != cmd.Process.Pid {
			continue
		}
		resp, err := client.Get("http://" + st.Addr + "/health")
		if err != nil {
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			fmt.Fprintf(o.Stdout, "atlas-app: started (pid %d, %s)\n", st.PID, st.Addr)
			return 0
		}
	}
}

func cmdReload(ctx context.Context, o Options, args []string) int {
	fs := newFlags("reload", o)
	pidfile := fs.String("pidfile", "", "`path` of the pidfile")
	timeout := fs.Duration("timeout", 30*time.Second, "how long to wait for the outcome")
	if !parse(fs, args, o) {
		return 2
	}
	return reload(ctx, o, *pidfile, *timeout)
}

// reload sends SIGHUP and waits for the reload count to move.
func reload(ctx context.Context, o Options, pidfile string, timeout time.Duration) int {
	pid := ReadPID(pidfile)
	if pid == 0 {
		fmt.Fprintln(o.Stderr, "atlas-app: not running")
		return 1
	}
	before, err := ReadStatus(pidfile)
	if err != nil || before.PID != pid {
		fmt.Fprintln(o.Stderr, "atlas-app: no status file from the running server")
		return 1
	}
	if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
		fmt.Fprintf(o.Stderr, "atlas-app: reload: %v\n", err)
		return 1
	}
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
		st, err := ReadStatus(pidfile)
		if err != nil || st.PID != pid || st.Reloads <= before.Reloads {
			if !Alive(pid) {
				fmt.Fprintln(o.Stderr, "atlas-app: the server exited during the reload")
				return 1
			}
			continue
		}
		if !st.OK {
			fmt.Fprintf(o.Stderr, "atlas-app: reload failed, the server answers 503 until a reload succeeds: %s\n", st.Error)
			return 1
		}
		fmt.Fprintf(o.Stdout, "atlas-app: reloaded (pid %d, same listener)\n", pid)
		return 0
	}
	fmt.Fprintf(o.Stderr, "atlas-app: no reload outcome after %s\n", timeout)
	return 1
}

func cmdStop(ctx context.Context, o Options, args []string) int {
	fs := newFlags("stop", o)
	pidfile := fs.String("pidfile", "", "`path` of the pidfile")
	timeout := fs.Duration("timeout", 15*time.Second, "how long to wait before SIGKILL")
	if !parse(fs, args, o) {
		return 2
	}
	pid := ReadPID(*pidfile)
	if pid == 0 {
		os.Remove(*pidfile)
		os.Remove(StatusPath(*pidfile))
		fmt.Fprintln(o.Stdout, "atlas-app: not running")
		return 0
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(*timeout)
	for Alive(pid) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	if Alive(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		time.Sleep(100 * time.Millisecond)
	}
	os.Remove(*pidfile)
	os.Remove(StatusPath(*pidfile))
	fmt.Fprintf(o.Stdout, "atlas-app: stopped (pid %d)\n", pid)
	return 0
}

func cmdStatus(o Options, args []string) int {
	fs := newFlags("status", o)
	pidfile := fs.String("pidfile", "", "`path` of the pidfile")
	if !parse(fs, args, o) {
		return 2
	}
	pid := ReadPID(*pidfile)
	if pid == 0 {
		fmt.Fprintln(o.Stdout, "atlas-app: not running")
		return 1
	}
	st, err := ReadStatus(*pidfile)
	if err == nil && st.PID == pid && !st.OK {
		fmt.Fprintf(o.Stdout, "atlas-app: running (pid %d) but its last reload failed: %s\n", pid, st.Error)
		return 1
	}
	fmt.Fprintf(o.Stdout, "atlas-app: running (pid %d)\n", pid)
	return 0
}

// Smoke logs in as the demo user at base (http://host:port) and reads
// patient id. It returns the patient; errors never quote a token.
func Smoke(ctx context.Context, base string, id int64) (*Patient, error) {
	pw := os.Getenv(DemoPasswordEnv)
	if pw == "" {
		pw = DefaultDemoPassword
	}
	client := &http.Client{Timeout: 10 * time.Second}
	body, _ := json.Marshal(map[string]string{"username": DemoUser, "password": pw})
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/login", strings.NewReader(string(body)))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("POST /login: %w", err)
	}
	var tok struct{ Token string }
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || err != nil || tok.Token == "" {
		return nil, fmt.Errorf("POST /login: status %d, no token", resp.StatusCode)
	}
	req, err = http.NewRequestWithContext(ctx, "GET", base+"/patients/"+strconv.FormatInt(id, 10), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	resp, err = client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET /patients/%d: %w", id, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /patients/%d: status %d", id, resp.StatusCode)
	}
	var p Patient
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&p); err != nil {
		return nil, fmt.Errorf("GET /patients/%d: %w", id, err)
	}
	return &p, nil
}

func cmdSmoke(ctx context.Context, o Options, args []string) int {
	fs := newFlags("smoke", o)
	base := fs.String("url", "http://127.0.0.1:8080", "base `URL` of the app")
	id := fs.Int64("patient", 1, "patient `id` to read")
	if !parse(fs, args, o) {
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	p, err := Smoke(ctx, strings.TrimRight(*base, "/"), *id)
	if err != nil {
		fmt.Fprintf(o.Stderr, "atlas-app smoke: %v\n", err)
		return 1
	}
	if p.SSN == nil || p.Email == nil {
		fmt.Fprintf(o.Stderr, "atlas-app smoke: patient %d has no PII\n", *id)
		return 1
	}
	fmt.Fprintf(o.Stdout, "atlas-app smoke: login ok, patient %d read and decrypted\n", *id)
	return 0
}
