package atlas

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// Server is the HTTP API:
//
//	POST /login          {"username","password"} -> 200 {"token"} | 401
//	GET  /patients/{id}  Authorization: Bearer TOKEN -> 200 Patient | 401 | 404 | 500
//	GET  /health         -> 200 {"status":"ok"} | 503 {"status":"unavailable"}
//
// Each request that needs the database opens its own connection with the
// credentials of the configuration in force, so a changed role password
// shows at once (/health answers 503) rather than when a pool recycles.
//
// Reload swaps the configuration atomically: a request uses the
// configuration it started with, the next one the new one, and nothing
// else changes (the listener stays open). When a reload fails — the .env
// is unusable or its DATABASE_URL does not log in — the server does not
// carry on with the values it had (they may have been rotated away, and
// an app silently running stale credentials is the failure a rotation must
// see): every endpoint answers 503 until a reload succeeds, /health with
// {"status":"unavailable","reason":"configuration reload failed"}.
type Server struct {
	cur atomic.Pointer[state]
	log *slog.Logger
	now func() time.Time
	// TokenTTL is the lifetime of the tokens /login issues (default TokenTTL).
	TokenTTL time.Duration
}

// state is the configuration in force, or why there is none.
type state struct {
	cfg    *Config
	failed string // the reload error; cfg is nil
}

// NewServer returns the application's server. log may be nil (discard).
func NewServer(cfg *Config, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{log: log, now: time.Now, TokenTTL: TokenTTL}
	s.cur.Store(&state{cfg: cfg})
	return s
}

// Config returns the configuration in force, nil after a failed reload.
func (s *Server) Config() *Config { return s.cur.Load().cfg }

// ReloadError is the error of the last reload, nil when the server has a
// working configuration.
func (s *Server) ReloadError() error {
	if f := s.cur.Load().failed; f != "" {
		return errors.New(f)
	}
	return nil
}

// Reload loads a new configuration with load, checks it (it must parse
// and its DATABASE_URL must log in and run SELECT 1) and swaps it in. On
// failure the server becomes unavailable (every endpoint 503) until a
// later Reload succeeds, and the error, which names keys and never
// values, is returned.
func (s *Server) Reload(ctx context.Context, load func() (*Config, error)) error {
	cfg, err := load()
	if err == nil {
		if perr := ping(ctx, cfg); perr != nil {
			err = fmt.Errorf("atlas: the new DATABASE_URL does not work: %s", dbErrClass(perr))
		}
	}
	if err != nil {
		s.cur.Store(&state{failed: err.Error()})
		s.log.Error("reload failed: serving 503 until a reload succeeds", "err", err)
		return err
	}
	s.cur.Store(&state{cfg: cfg})
	s.log.Info("reloaded configuration", "JWT_SECRET_PREVIOUS set", cfg.JWTSecretPrevious != nil, "ENCRYPTION_KEY_PREVIOUS set", cfg.EncryptionKeyPrevious != nil)
	return nil
}

// config returns the configuration for one request, or answers 503.
func (s *Server) config(w http.ResponseWriter) *Config {
	cfg := s.cur.Load().cfg
	if cfg == nil {
		writeError(w, http.StatusServiceUnavailable, "configuration reload failed")
	}
	return cfg
}

// Handler returns the HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /login", s.login)
	mux.HandleFunc("GET /patients/{id}", s.patient)
	mux.HandleFunc("GET /health", s.health)
	return s.logRequests(mux)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// logRequests logs method, path and status: never headers or bodies.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		t0 := time.Now()
		next.ServeHTTP(sw, r)
		s.log.Info("request", "method", r.Method, "path", r.URL.Path, "status", sw.status, "duration", time.Since(t0).Round(time.Microsecond))
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="atlas"`)
	}
	writeJSON(w, status, map[string]string{"error": msg})
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	cfg := s.config(w)
	if cfg == nil {
		return
	}
	var req struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "invalid request body")
		return
	}
	userOK := subtle.ConstantTimeCompare([]byte(req.Username), []byte(DemoUser)) == 1
	passOK := subtle.ConstantTimeCompare([]byte(req.Password), []byte(cfg.DemoPassword)) == 1
	if !userOK || !passOK {
		writeError(w, http.StatusUnauthorized, "invalid credentials")
		return
	}
	tok, err := IssueTokenTTL(cfg.JWTSecret, DemoUser, s.now(), s.TokenTTL)
	if err != nil {
		s.log.Error("issue token failed")
		writeError(w, http.StatusInternalServerError, "internal error")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": tok})
}

func (s *Server) authorized(cfg *Config, r *http.Request) bool {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
		return false
	}
	_, err := VerifyToken([][]byte{cfg.JWTSecret, cfg.JWTSecretPrevious}, strings.TrimSpace(tok))
	return err == nil
}

func (s *Server) patient(w http.ResponseWriter, r *http.Request) {
	cfg := s.config(w)
	if cfg == nil {
		return
	}
	if !s.authorized(cfg, r) {
		writeError(w, http.StatusUnauthorized, "unauthorized")
		return
	}
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	conn, err := cfg.Connect(ctx)
	if err != nil {
		s.log.Error("database connect failed", "err", dbErrClass(err))
		writeError(w, http.StatusServiceUnavailable, "database unavailable")
		return
	}
	defer conn.Close(context.Background())

	var p Patient
	var email, ssn *string
	err = conn.QueryRow(ctx, `SELECT id, name, email, ssn FROM patients WHERE id = $1`, id).Scan(&p.ID, &p.Name, &email, &ssn)
	if errors.Is(err, pgx.ErrNoRows) {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	if err != nil {
		s.log.Error("patient query failed", "err", dbErrClass(err))
		writeError(w, http.StatusInternalServerError, "internal error")
		return
	}
	keys := [][]byte{cfg.EncryptionKey, cfg.EncryptionKeyPrevious}
	for _, f := range []struct {
		name string
		in   *string
		out  **string
	}{{"email", email, &p.Email}, {"ssn", ssn, &p.SSN}} {
		if f.in == nil {
			continue
		}
		pt, _, err := Decrypt(keys, *f.in)
		if err != nil {
			// Name the row and column, never the ciphertext or a key.
			s.log.Error("patient field does not decrypt under ENCRYPTION_KEY or ENCRYPTION_KEY_PREVIOUS", "patient", id, "field", f.name)
			writeError(w, http.StatusInternalServerError, "internal error")
			return
		}
		*f.out = &pt
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	if s.cur.Load().cfg == nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": "configuration reload failed"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := s.Ping(ctx); err != nil {
		s.log.Warn("health check failed", "err", dbErrClass(err))
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// Ping opens a connection with the configuration in force and runs SELECT 1.
func (s *Server) Ping(ctx context.Context) error {
	cfg := s.cur.Load().cfg
	if cfg == nil {
		return errors.New("atlas: configuration reload failed")
	}
	return ping(ctx, cfg)
}

func ping(ctx context.Context, cfg *Config) error {
	conn, err := cfg.Connect(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var one int
	return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
}
