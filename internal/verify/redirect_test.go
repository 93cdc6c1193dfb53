package verify

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/rekeyhq/rekey"
)

// recorder is a server that records what reaches it (the host a redirect
// points at).
type recorder struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string // header and body of each request
}

func newRecorder(t *testing.T) *recorder {
	r := &recorder{}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.seen = append(r.seen, req.Header.Get("X-Api-Key")+" "+string(b))
		r.mu.Unlock()
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *recorder) requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.seen)
}

// secretCheck is a POST carrying API_KEY in a header and in its body.
func secretCheck(t *testing.T, url, follow string, expect ...int) rekey.Check {
	c := httpCheck(t, "login", url, 2)
	c.HTTP.Method = "POST"
	c.HTTP.Headers = []rekey.Header{{Name: "X-Api-Key", Value: rekey.MustParseTemplate("{{ API_KEY }}")}}
	c.HTTP.Body = rekey.MustParseTemplate(`{"key": "{{ API_KEY }}"}`)
	c.HTTP.FollowRedirects = follow
	c.HTTP.Expect = expect
	return c
}

var apiKey = values(map[string]string{"API_KEY": "redirect-canary-0123456789"})

// TestHTTPRedirects: a check follows no redirect by default (it fails at
// once, naming the target's host, and the target receives nothing);
// follow_redirects: same-origin follows redirects within scheme, host and
// port only, never from https to http; a check that expects the redirect
// status passes without following it.
func TestHTTPRedirects(t *testing.T) {
	other := newRecorder(t)
	otherHost := strings.Replace(other.URL, "127.0.0.1", "localhost", 1)
	samePortOther := newRecorder(t) // same host, another port: another origin
	mux := http.NewServeMux()
	mux.HandleFunc("/away", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, otherHost+"/steal?x=1", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/port", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, samePortOther.URL+"/steal", http.StatusPermanentRedirect)
	})
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/here", http.StatusTemporaryRedirect)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop", http.StatusFound)
	})
	mux.HandleFunc("/here", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("X-Api-Key") == "" || !strings.Contains(string(b), "redirect-canary") {
			w.WriteHeader(http.StatusUnauthorized)
		}
	})
	app := httptest.NewServer(mux)
	defer app.Close()

	for _, tc := range []struct {
		name, path, follow string
		expect             []int
		ok                 bool
		msg                string
	}{
		{"default, another host", "/away", "", nil, false, "redirect (status 307) to " + otherHost + " not followed"},
		{"default, same origin", "/moved", "", nil, false, "not followed"},
		{"same-origin, within the origin", "/moved", rekey.RedirectsSameOrigin, nil, true, ""},
		{"same-origin, another host", "/away", rekey.RedirectsSameOrigin, nil, false, "to another origin, " + otherHost + ", refused"},
		{"same-origin, another port", "/port", rekey.RedirectsSameOrigin, nil, false, "to another origin, " + samePortOther.URL + ", refused"},
		{"same-origin, a loop", "/loop", rekey.RedirectsSameOrigin, nil, false, "more than 10 redirects"},
		{"the redirect expected", "/away", "", []int{307}, true, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runOne(t, secretCheck(t, app.URL+tc.path, tc.follow, tc.expect...), apiKey, Options{})
			if r.OK != tc.ok || !strings.Contains(r.Message, tc.msg) {
				t.Errorf("ok %v, message %q; want ok %v and %q", r.OK, r.Message, tc.ok, tc.msg)
			}
			if !tc.ok && r.Attempts != 1 {
				t.Errorf("a refused redirect is retried (%d attempts)", r.Attempts)
			}
			if strings.Contains(r.Message+r.Hint, "steal") || strings.Contains(r.Message+r.Hint, "redirect-canary") {
				t.Errorf("the message shows the target's path or a value: %q %q", r.Message, r.Hint)
			}
		})
	}
	if n := other.requests() + samePortOther.requests(); n > 0 {
		t.Errorf("redirect targets in another origin received %d requests", n)
	}
}

// TestHTTPRedirectHTTPSToHTTP: same-origin never follows https to http
// (the check's own client, Options.HTTPClient, gets the policy too).
func TestHTTPRedirectHTTPSToHTTP(t *testing.T) {
	plain := newRecorder(t)
	tls := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/down" {
			http.Redirect(w, r, plain.URL+"/", http.StatusTemporaryRedirect)
		}
	}))
	defer tls.Close()
	client := tls.Client()
	r := runOne(t, secretCheck(t, tls.URL+"/down", rekey.RedirectsSameOrigin), apiKey, Options{HTTPClient: client})
	if r.OK || !strings.Contains(r.Message, "from https to "+plain.URL+" refused") {
		t.Errorf("ok %v, message %q", r.OK, r.Message)
	}
	if plain.requests() > 0 {
		t.Errorf("the http target received the check's request")
	}
	if client.CheckRedirect != nil {
		t.Errorf("the caller's client was changed")
	}
	// The same client, within the origin: followed.
	r = runOne(t, secretCheck(t, tls.URL+"/up", rekey.RedirectsSameOrigin), apiKey, Options{HTTPClient: client})
	if !r.OK {
		t.Errorf("https, no redirect: %q", r.Message)
	}
}
