package bench

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rekeyhq/rekey/examples/atlas-app/atlas"
	"github.com/rekeyhq/rekey/internal/demo"
	"github.com/rekeyhq/rekey/internal/demo/atlasdemo"
	"github.com/rekeyhq/rekey/internal/testkit"
)

// BenchmarkE2ELoadRotation is the load loop: clients hit POST
// /login and GET /patients/{id} of the reference app (examples/atlas-app,
// its own binary) continuously while `rekey rotate --all` runs b.N
// times: a graceful rotation of every secret (JWT_SECRET with
// JWT_SECRET_PREVIOUS for 15m; DATABASE_PASSWORD with the alternating
// strategy, the app moving from one login role to the other (the pair is
// managed as atlasdemo.Provision sets it up for the server's version: by the
// login role itself on PostgreSQL 15, by the admin role of PG_ADMIN_URL on
// 16 and later); ENCRYPTION_KEY
// with online re-encryption of every patient's email and SSN), rekey
// restarting the app (SIGHUP: same process, same listener) and running
// its checks. Every request must succeed: the benchmark fails on any
// failed request. Reported: requests, failed requests, rotations,
// requests/s. REKEY_LOAD_PATIENTS sets the number of patients (default
// 2000), REKEY_LOAD_CLIENTS the number of clients (default 4). Client 0
// keeps its token for 2s, across a rotation; the others log in before
// every read. Rotations start 3s apart.
//
//	go test -run '^$' -bench E2ELoadRotation -benchtime 5x ./bench/
func BenchmarkE2ELoadRotation(b *testing.B) {
	patients := envInt("REKEY_LOAD_PATIENTS", 2000)
	clients := envInt("REKEY_LOAD_CLIENTS", 4)
	bin := binary(b)
	app := filepath.Join(filepath.Dir(bin), demo.AppName) // removed with the rekey binary
	if err := demo.BuildApp(context.Background(), "..", app, nil); err != nil {
		b.Fatal(err)
	}
	c := testkit.StartCluster(b)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	key := atlasdemo.Random(32, base64.StdEncoding)
	db, err := atlasdemo.Provision(ctx, atlasdemo.ProvisionOptions{SuperURL: c.SuperConnString("postgres"), Name: "atlas", Alternating: true, Patients: patients, Key: key, App: app})
	if err != nil {
		b.Fatal(err)
	}
	port, err := atlasdemo.FreePort()
	if err != nil {
		b.Fatal(err)
	}
	listen := "127.0.0.1:" + strconv.Itoa(port)
	base := "http://" + listen
	dir := b.TempDir()
	env := testkit.CleanEnv("REKEY_MASTER_KEY="+atlasdemo.Random(32, base64.StdEncoding), "XDG_CONFIG_HOME="+b.TempDir(), "REKEY_ACTOR=load",
		atlasdemo.ParentPIDEnv+"="+strconv.Itoa(os.Getpid()))
	testkit.WriteFile(b, filepath.Join(dir, ".env"), atlasdemo.NewEnv(db, key, port).Text(), 0o600)
	run := func(bin string, args ...string) string {
		b.Helper()
		out, _ := runIn(b, bin, dir, env, 0, args...)
		return out
	}
	rekey := func(args ...string) string { b.Helper(); return run(bin, args...) }
	run(app, "start", "--env-file", ".env", "--listen", listen, "--pidfile", "app.pid")
	defer exec.Command(app, "stop", "--pidfile", filepath.Join(dir, "app.pid")).Run()
	rekey("init", "--env-file", ".env", "--postgres-alternating")
	if err := atlasdemo.Configure(filepath.Join(dir, "rekey.yaml"), atlasdemo.RekeyOptions{
		App: app, Listen: listen, Pidfile: "app.pid", Sessions: "graceful", Grace: "15m",
		Patients: patients, DecryptSample: true,
	}); err != nil {
		b.Fatal(err)
	}
	rekey("config", "trust") // Configure completed rekey.yaml: approve it, as the operator would
	rekey("verify")

	var requests, failures, during atomic.Int64
	var rotating atomic.Bool // a rekey rotate is running
	var failMu sync.Mutex
	var failLog []string
	fail := func(what string) {
		failures.Add(1)
		failMu.Lock()
		if len(failLog) < 20 {
			failLog = append(failLog, time.Now().Format("15:04:05.000")+" "+what)
		}
		failMu.Unlock()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var tok string
			var issued time.Time
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Client 0 keeps its token for 2s (a session that spans a
				// reload: JWT_SECRET_PREVIOUS must accept it); the others
				// log in before every read.
				if tok == "" || w != 0 || time.Since(issued) > 2*time.Second {
					t, err := loadLogin(client, base)
					requests.Add(1)
					if err != nil {
						fail("login: " + err.Error())
						continue
					}
					tok, issued = t, time.Now()
				}
				id := 1 + rand.IntN(patients)
				requests.Add(1)
				if rotating.Load() {
					during.Add(1)
				}
				if _, err := loadGet(client, base, tok, id); err != nil {
					fail(fmt.Sprintf("GET /patients/%d: %v", id, err))
				}
			}
		}(w)
	}
	time.Sleep(300 * time.Millisecond)
	b.ResetTimer()
	t0 := time.Now()
	for i := 0; i < b.N; i++ {
		// Rotations start 3s apart: client 0's token (kept 2s) is then at
		// most one rotation old, which JWT_SECRET_PREVIOUS covers. (Two
		// rotations within one token's life would refuse it: there is one
		// previous secret.)
		if i > 0 {
			time.Sleep(time.Until(t0.Add(time.Duration(i) * 3 * time.Second)))
		}
		rotating.Store(true)
		out := rekey("rotate", "--all")
		rotating.Store(false)
		if os.Getenv("REKEY_LOAD_VERBOSE") != "" {
			fmt.Printf("%s rotation %d:\n%s", time.Now().Format("15:04:05.000"), i+1, out)
		}
	}
	elapsed := time.Since(t0)
	b.StopTimer()
	time.Sleep(300 * time.Millisecond)
	close(stop)
	wg.Wait()

	// Afterwards: every patient reads back identical, with a fresh login.
	tok, err := loadLogin(client, base)
	if err != nil {
		b.Fatal(err)
	}
	for id := 1; id <= patients; id += max(1, patients/50) {
		if err := loadCheck(client, base, tok, id); err != nil {
			b.Fatal(err)
		}
	}
	n, f := requests.Load(), failures.Load()
	b.ReportMetric(float64(n), "requests")
	b.ReportMetric(float64(f), "failed")
	b.ReportMetric(float64(n)/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(during.Load()), "reads-during-rotate")
	fmt.Printf("e2e load: %d rotations of JWT_SECRET (graceful), DATABASE_PASSWORD (alternating), ENCRYPTION_KEY (online re-encryption of %d patients) in %s; %d clients made %d requests (%d patient reads while rekey rotate was running), %d failed\n",
		b.N, patients, elapsed.Round(time.Millisecond), clients, n, during.Load(), f)
	fmt.Printf("reproduce: go test -run '^$' -bench E2ELoadRotation -benchtime %dx ./bench/\n", b.N)
	if f > 0 {
		log, _ := os.ReadFile(filepath.Join(dir, "app.pid.log"))
		if p := os.Getenv("REKEY_LOAD_KEEP_LOG"); p != "" {
			os.WriteFile(p, log, 0o644)
		}
		b.Errorf("%d of %d requests failed during the rotations; first failures:\n%s\napp log (tail):\n%s", f, n, strings.Join(failLog, "\n"), tail(string(log), 3000))
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func loadLogin(c *http.Client, base string) (string, error) {
	resp, err := c.Post(base+"/login", "application/json", strings.NewReader(`{"username":"demo","password":"demo-password"}`))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct{ Token string }
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK || out.Token == "" {
		return "", fmt.Errorf("status %d", resp.StatusCode)
	}
	return out.Token, nil
}

// loadGet reads patient id with tok and returns the body; an error unless
// the status is 200.
func loadGet(c *http.Client, base, tok string, id int) ([]byte, error) {
	req, _ := http.NewRequest("GET", base+"/patients/"+strconv.Itoa(id), nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	return body, nil
}

// loadCheck reads patient id and compares it with what was seeded.
func loadCheck(c *http.Client, base, tok string, id int) error {
	body, err := loadGet(c, base, tok, id)
	if err != nil {
		return fmt.Errorf("GET /patients/%d: %v", id, err)
	}
	var got atlas.Patient
	if err := json.NewDecoder(bytes.NewReader(body)).Decode(&got); err != nil {
		return fmt.Errorf("GET /patients/%d: %v", id, err)
	}
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(atlas.DemoPatient(int64(id)))
	if !bytes.Equal(g, w) {
		return fmt.Errorf("patient %d does not read back identical after the rotations", id)
	}
	return nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
