package verify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rekeyhq/rekey"
)

// check returns a check with fast retries: attempts are 10ms apart.
func check(name string, retries int) rekey.Check {
	return rekey.Check{Name: name, Retries: retries, Backoff: 10 * time.Millisecond, Timeout: 5 * time.Second, Deadline: 30 * time.Second}
}

func httpCheck(t *testing.T, name, url string, retries int) rekey.Check {
	c := check(name, retries)
	c.Type, c.HTTP = rekey.CheckHTTP, &rekey.HTTPCheck{Method: "GET", URL: rekey.MustParseTemplate(url)}
	return c
}

// values is a resolver over a map.
func values(m map[string]string) Resolver {
	return func(name string) (rekey.Value, error) {
		v, ok := m[name]
		if !ok {
			return rekey.Value{}, rekey.Errorf(rekey.CodeNotFound, "%s has no current value", name)
		}
		return rekey.NewValueString(v), nil
	}
}

func runOne(t *testing.T, c rekey.Check, resolve Resolver, o Options) Result {
	t.Helper()
	rs := Run(context.Background(), []rekey.Check{c}, resolve, o)
	if len(rs) != 1 {
		t.Fatalf("%d results", len(rs))
	}
	return rs[0]
}

func TestHTTP(t *testing.T) {
	var flaky, never atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/flaky", func(w http.ResponseWriter, r *http.Request) {
		if flaky.Add(1) <= 2 {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("/never", func(w http.ResponseWriter, r *http.Request) {
		never.Add(1)
		http.Error(w, "down", http.StatusInternalServerError)
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Email, Password string }
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if in.Password != "pa\"ss word" {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"error": "wrong password"}`) // 200 with an error body
			return
		}
		io.WriteString(w, `{"data": {"token": "eyJhbGciOi"}, "ok": true}`)
	})
	mux.HandleFunc("/text", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "<html>") })
	mux.HandleFunc("/created", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) })
	mux.HandleFunc("/private", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusUnauthorized)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	t.Run("ok", func(t *testing.T) {
		r := runOne(t, httpCheck(t, "health", srv.URL+"/health", 2), nil, Options{})
		if !r.OK || r.Attempts != 1 || r.Message != "status 200" || r.Name != "health" || r.Type != rekey.CheckHTTP {
			t.Errorf("%+v", r)
		}
	})
	t.Run("flaky succeeds on the third attempt", func(t *testing.T) {
		r := runOne(t, httpCheck(t, "flaky", srv.URL+"/flaky", 3), nil, Options{})
		if !r.OK || r.Attempts != 3 {
			t.Errorf("%+v", r)
		}
	})
	t.Run("flaky with too few retries", func(t *testing.T) {
		flaky.Store(0)
		r := runOne(t, httpCheck(t, "flaky", srv.URL+"/flaky", 1), nil, Options{})
		if r.OK || r.Attempts != 2 || !strings.Contains(r.Message, "status 503, want 2xx") {
			t.Errorf("%+v", r)
		}
	})
	t.Run("never succeeds within the deadline", func(t *testing.T) {
		c := httpCheck(t, "never", srv.URL+"/never", 100)
		c.Deadline = 400 * time.Millisecond
		r := runOne(t, c, nil, Options{})
		if r.OK || r.Attempts < 2 || r.Attempts > 101 || !strings.Contains(r.Message, "GET "+srv.URL+"/never: status 500, want 2xx") ||
			!strings.Contains(r.Message, "deadline 400ms reached") || !strings.Contains(r.Hint, "logs") {
			t.Errorf("%+v", r)
		}
		if int(never.Load()) != r.Attempts {
			t.Errorf("%d requests for %d attempts", never.Load(), r.Attempts)
		}
	})
	login := func(password string) rekey.Check {
		c := check("login", 0)
		c.Type, c.HTTP = rekey.CheckHTTP, &rekey.HTTPCheck{
			Method:    "POST",
			URL:       rekey.MustParseTemplate(srv.URL + "/login"),
			Headers:   []rekey.Header{{Name: "Content-Type", Value: rekey.MustParseTemplate("application/json")}},
			Body:      rekey.MustParseTemplate(`{"email": "smoke@example.com", "password": "{{ SMOKE_PASSWORD | json }}"}`),
			Expect:    []int{200},
			JSONField: "data.token",
		}
		return c
	}
	t.Run("json_field present", func(t *testing.T) {
		r := runOne(t, login(""), values(map[string]string{"SMOKE_PASSWORD": "pa\"ss word"}), Options{})
		if !r.OK || r.Message != "status 200, data.token present" {
			t.Errorf("%+v", r)
		}
	})
	t.Run("json_field missing", func(t *testing.T) {
		r := runOne(t, login(""), values(map[string]string{"SMOKE_PASSWORD": "wrong-password"}), Options{})
		if r.OK || !strings.Contains(r.Message, "the response has no field data.token") || !strings.Contains(r.Hint, "test account") {
			t.Errorf("%+v", r)
		}
	})
	t.Run("not json", func(t *testing.T) {
		c := httpCheck(t, "text", srv.URL+"/text", 0)
		c.HTTP.JSONField = "token"
		r := runOne(t, c, nil, Options{})
		if r.OK || !strings.Contains(r.Message, "the response is not JSON") {
			t.Errorf("%+v", r)
		}
	})
	t.Run("expect", func(t *testing.T) {
		c := httpCheck(t, "created", srv.URL+"/created", 0)
		c.HTTP.Expect = []int{200, 201}
		if r := runOne(t, c, nil, Options{}); !r.OK {
			t.Errorf("%+v", r)
		}
		c.HTTP.Expect = []int{200, 204}
		if r := runOne(t, c, nil, Options{}); r.OK || !strings.Contains(r.Message, "status 201, want 200 or 204") {
			t.Errorf("%+v", r)
		}
	})
	t.Run("unauthorized", func(t *testing.T) {
		r := runOne(t, httpCheck(t, "private", srv.URL+"/private", 0), nil, Options{})
		if r.OK || !strings.Contains(r.Hint, "rejects the credentials") {
			t.Errorf("%+v", r)
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		r := runOne(t, httpCheck(t, "down", "http://"+closedAddr(t)+"/health", 1), nil, Options{})
		if r.OK || r.Attempts != 2 || !strings.Contains(r.Message, "connection refused") || !strings.Contains(r.Hint, "rekey services status") {
			t.Errorf("%+v", r)
		}
	})
	t.Run("missing value", func(t *testing.T) {
		r := runOne(t, login(""), values(nil), Options{})
		if r.OK || r.Attempts != 0 || !strings.Contains(r.Message, "cannot read SMOKE_PASSWORD") {
			t.Errorf("%+v", r)
		}
	})
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

func TestTCP(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	c := check("port", 0)
	c.Type, c.TCP = rekey.CheckTCP, &rekey.TCPCheck{Address: rekey.MustParseTemplate(l.Addr().String())}
	if r := runOne(t, c, nil, Options{}); !r.OK || r.Message != "connected" {
		t.Errorf("%+v", r)
	}
	addr := closedAddr(t)
	c.Retries = 2
	c.TCP = &rekey.TCPCheck{Address: rekey.MustParseTemplate(addr)}
	r := runOne(t, c, nil, Options{})
	if r.OK || r.Attempts != 3 || r.Message != "connect to "+addr+": connection refused" || !strings.Contains(r.Hint, "nothing listens") {
		t.Errorf("%+v", r)
	}
}

func TestCommand(t *testing.T) {
	const secret = "cmd-secret-value-42"
	cmd := func(script string) rekey.Check {
		c := check("smoke", 0)
		c.Type, c.Command = rekey.CheckCommand, &rekey.Command{Shell: script, Timeout: 5 * time.Second}
		return c
	}
	dir := t.TempDir()
	if r := runOne(t, cmd("test -d ."), nil, Options{Dir: dir}); !r.OK || r.Attempts != 1 {
		t.Errorf("%+v", r)
	}
	o := Options{Dir: dir, Redact: NewRedactor(rekey.NewValueString(secret))}
	r := runOne(t, cmd("echo starting; echo 'login failed for "+secret+"' >&2; exit 2"), nil, o)
	if r.OK || r.Message != "echo starting; echo 'login failed for [REDACTED]' >&2; exit 2: exit status 2: login failed for [REDACTED]" {
		// The command text is rekey.yaml's; this one holds the value only
		// because the test put it there.
		t.Errorf("%+v", r)
	}
	c := cmd("sleep 30")
	c.Command.Timeout, c.Timeout = 200*time.Millisecond, 200*time.Millisecond
	if r := runOne(t, c, nil, Options{Dir: dir}); r.OK || !strings.Contains(r.Message, "sleep 30: timed out") {
		t.Errorf("%+v", r)
	}
}

// TestSecretsNeverShown checks that a failing check whose URL, header and
// body embed a managed value never shows it: not in the message, the hint
// or the JSON form — also when the value is in the error text Go builds.
func TestSecretsNeverShown(t *testing.T) {
	const token = "tok_9f8e7d6c5b4a3210-very-secret"
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A hostile server: it echoes everything back, status and body.
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, "%s %s %s", r.URL, r.Header.Get("Authorization"), r.Header.Get("X-Token"))
	}))
	defer echo.Close()
	resolve := values(map[string]string{"API_TOKEN": token, "BAD": "x\x7fy-secret-with-control", "HOST_SECRET": "secret-host-name-xyz.invalid"})
	var cases []rekey.Check
	add := func(name, url string, headers ...rekey.Header) {
		c := check(name, 1)
		c.Type, c.HTTP = rekey.CheckHTTP, &rekey.HTTPCheck{Method: "POST", URL: rekey.MustParseTemplate(url), Headers: headers,
			Body: rekey.MustParseTemplate(`{"token": "{{ API_TOKEN | json }}"}`), JSONField: "token"}
		cases = append(cases, c)
	}
	bearer := rekey.Header{Name: "Authorization", Value: rekey.MustParseTemplate("Bearer {{ API_TOKEN }}")}
	add("echo", echo.URL+"/login?token={{ API_TOKEN | urlquery }}", bearer, rekey.Header{Name: "X-Token", Value: rekey.MustParseTemplate("{{ API_TOKEN }}")})
	add("refused", "http://"+closedAddr(t)+"/p/{{ API_TOKEN | urlpath }}?t={{ API_TOKEN }}", bearer)
	add("bad-url", "http://127.0.0.1/{{ BAD }}")
	add("bad-header", echo.URL, rekey.Header{Name: "X-Token", Value: rekey.MustParseTemplate("{{ BAD }}")})
	add("bad-host", "http://{{ HOST_SECRET }}:1/")
	c := check("tcp", 0)
	c.Type, c.TCP = rekey.CheckTCP, &rekey.TCPCheck{Address: rekey.MustParseTemplate("{{ HOST_SECRET }}:1")}
	cases = append(cases, c)

	rs := Run(context.Background(), cases, resolve, Options{})
	j, err := json.Marshal(rs)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.OK {
			t.Errorf("%s passed: %+v", r.Name, r)
		}
	}
	for _, s := range []string{token, "tok_9f8e7d6c5b4a3210", "secret-with-control", "secret-host-name"} {
		if strings.Contains(string(j), s) || strings.Contains(fmt.Sprintf("%v %+v", rs, rs), s) {
			t.Errorf("a value shows: %s", j)
		}
	}
	if !strings.Contains(string(j), "{{ API_TOKEN | urlquery }}") {
		t.Errorf("the message should name the template: %s", j)
	}
	if err := Error(rs); err == nil || strings.Contains(err.Error()+rekey.ErrorHint(err), token) || rekey.ErrorCode(err) != rekey.CodeVerifyFailed {
		t.Errorf("Error: %v", err)
	}
}

func TestRedactor(t *testing.T) {
	red := NewRedactor(rekey.NewValueString("a b/c\"d+e"), rekey.NewValueString("abc"), rekey.NewValueString("longer-secret"))
	for in, want := range map[string]string{
		`raw a b/c"d+e end`:        "raw [REDACTED] end",
		`query a+b%2Fc%22d%2Be`:    "query [REDACTED]",
		`query a%20b%2Fc%22d%2Be`:  "query [REDACTED]",
		`path a%20b%2Fc%22d+e`:     "path [REDACTED]",
		`json a b/c\"d+e`:          "json [REDACTED]",
		`short abc stays`:          "short abc stays",
		`x-longer-secret-and-more`: "x-[REDACTED]-and-more",
	} {
		if got := red(in); got != want {
			t.Errorf("red(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOrderAndOnResult(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(100 * time.Millisecond)
	}))
	defer slow.Close()
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer fast.Close()
	var seen []string
	rs := Run(context.Background(), []rekey.Check{httpCheck(t, "slow", slow.URL, 0), httpCheck(t, "fast", fast.URL, 0)}, nil,
		Options{OnResult: func(r Result) { seen = append(seen, r.Name) }})
	if rs[0].Name != "slow" || rs[1].Name != "fast" || strings.Join(seen, ",") != "slow,fast" {
		t.Errorf("results %+v, seen %v", rs, seen)
	}
	if Error(rs) != nil || len(Failed(rs)) != 0 {
		t.Errorf("Error %v", Error(rs))
	}
}
