package reencrypt

import (
	"bufio"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rekeyhq/rekey"
)

// runCodecHelper makes the test binary a command codec program (the
// protocol of the package doc): AES-256-GCM under SHA-256 of the key the
// request carries. Modes: "ok"; "crash" (exits after
// REKEY_CODEC_CRASH_AFTER requests); "liar" (seals garbage); "proto"
// (answers nonsense). With REKEY_CODEC_ARGV_OUT set it first writes its
// argv and environment there.
func runCodecHelper(mode string) int {
	if p := os.Getenv("REKEY_CODEC_ARGV_OUT"); p != "" {
		_ = os.WriteFile(p, []byte(strings.Join(os.Args, "\n")+"\n"+strings.Join(os.Environ(), "\n")), 0o600)
	}
	crashAfter, _ := strconv.Atoi(os.Getenv("REKEY_CODEC_CRASH_AFTER"))
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	n := 0
	for in.Scan() {
		n++
		if mode == "crash" && n > crashAfter {
			os.Exit(3)
		}
		if mode == "hang" && n > crashAfter {
			select {} // never answers again
		}
		if mode == "proto" {
			out.WriteString("hello\n")
			out.Flush()
			continue
		}
		f := strings.Split(in.Text(), " ")
		key, err1 := base64.StdEncoding.DecodeString(f[1])
		data, err2 := base64.StdEncoding.DecodeString(f[2])
		if len(f) != 3 || err1 != nil || err2 != nil {
			out.WriteString("err bad request\n")
			out.Flush()
			continue
		}
		h := sha256.Sum256(key)
		block, _ := aes.NewCipher(h[:])
		gcm, _ := cipher.NewGCM(block)
		var res []byte
		var err error
		switch f[0] {
		case "open":
			if len(data) < 28 {
				err = errors.New("short")
				break
			}
			res, err = gcm.Open(nil, data[:12], data[12:], nil)
		case "seal":
			nonce := make([]byte, 12)
			rand.Read(nonce)
			res = gcm.Seal(nonce, nonce, data, nil)
			if mode == "liar" {
				res[len(res)-1] ^= 1
			}
		}
		if err != nil {
			out.WriteString("err " + f[2] + "\n") // a careless program: rekey must not show this
		} else {
			out.WriteString("ok " + base64.StdEncoding.EncodeToString(res) + "\n")
		}
		out.Flush()
	}
	return 0
}

// helperCommand is the test binary as a command codec in mode.
func helperCommand(t testing.TB, mode string, extraEnv ...string) []string {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The codec reads its mode from the environment: env(1) sets it
	// without touching rekey's own environment.
	return append(append([]string{"/usr/bin/env", codecEnv + "=" + mode}, extraEnv...), exe)
}

// TestCommandCodec: the command codec round-trips through a Python
// script and through a Go program, one process per run, requests
// pipelined by all workers; keys never reach the program's argv or
// environment.
func TestCommandCodec(t *testing.T) {
	py, err := filepath.Abs("testdata/codec.py")
	if err != nil {
		t.Fatal(err)
	}
	argvOut := filepath.Join(t.TempDir(), "argv")
	for _, tc := range []struct {
		name string
		cmd  []string
		enc  string
		n    int
	}{
		{"python", []string{"python3", py}, EncodingBase64, 300},
		{"go", helperCommand(t, "ok", "REKEY_CODEC_ARGV_OUT="+argvOut), EncodingBytea, 3000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dsn, conn := newDB(t, true)
			cfg := rekey.ReencryptSpec{Codec: CodecCommand, Command: tc.cmd, Encoding: tc.enc, Columns: []string{"patients.email", "patients.ssn"}, BatchSize: 256, KeyID: tc.name == "go"}
			oldK, newK := newKey32(t, "base64"), newKey32(t, "base64")
			seedTable(t, conn, "patients", cfg, mustCipher(t, cfg, oldK), tc.n)
			res, err := Run(testCtx(t), job(dsn, cfg, oldK, newK, "cmd"))
			if err != nil {
				t.Fatal(err)
			}
			if res.Reencrypted != int64(2*tc.n) {
				t.Fatalf("%+v", res.Totals)
			}
			checkDecrypts(t, conn, "patients", mustCipher(t, cfg, newK), tc.n, "email", "ssn")
			c, err := Count(testCtx(t), CountJob{DSN: dsn, Config: cfg, Keys: []rekey.Value{newK, oldK}})
			if err != nil || c.ByKey(0) != int64(2*tc.n) {
				t.Fatalf("count %v %+v", err, c)
			}
		})
	}
	b, err := os.ReadFile(argvOut)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) == 0 || strings.Contains(string(b), "base64") {
		t.Fatalf("argv/env file: %d bytes", len(b))
	}
}

// TestCommandCodecFailures: a program that dies mid-run, one that seals
// values that do not open, one that answers nonsense and one that stops
// answering (killed after commandStall) stop the run
// with an error; no row is lost or garbled (each opens with the old or the
// new key to its plaintext), and a run with a working program completes.
// An "err" answer's reason (which could quote the request) is never shown.
func TestCommandCodecFailures(t *testing.T) {
	dsn, conn := newDB(t, true)
	good := rekey.ReencryptSpec{Codec: CodecCommand, Command: helperCommand(t, "ok"), Columns: []string{"patients.email", "patients.ssn"}, BatchSize: 100}
	oldK, newK := newKey32(t, "base64"), newKey32(t, "base64")
	const n = 2000
	seedTable(t, conn, "patients", good, mustCipher(t, good, oldK), n)
	before := readAll(t, conn, "patients", "email", "ssn")

	defer func(d time.Duration) { commandStall = d }(commandStall)
	commandStall = time.Second
	for mode, wantCode := range map[string]rekey.Code{"crash": rekey.CodeInternal, "liar": rekey.CodeVerifyFailed, "proto": rekey.CodeInternal, "hang": rekey.CodeInternal} {
		cfg := good
		cfg.Command = helperCommand(t, mode, "REKEY_CODEC_CRASH_AFTER=1500")
		_, err := Run(testCtx(t), job(dsn, cfg, oldK, newK, "fail-"+mode))
		if err == nil || rekey.ErrorCode(err) != wantCode {
			t.Fatalf("%s: %v (code %v)", mode, err, rekey.ErrorCode(err))
		}
		for _, v := range before {
			for _, x := range v {
				if strings.Contains(err.Error(), string(x)) {
					t.Fatalf("%s: the error quotes a ciphertext", mode)
				}
			}
		}
	}
	oldC, newC := mustCipher(t, good, oldK), mustCipher(t, good, newK)
	all := readAll(t, conn, "patients", "email", "ssn")
	moved := 0
	for id, vals := range all {
		for c, v := range vals {
			col := []string{"email", "ssn"}[c]
			pt, err := oldC.Decrypt(v)
			if err != nil {
				pt, err = newC.Decrypt(v)
				moved++
			}
			if err != nil || string(pt) != plaintextOf(id, col) {
				t.Fatalf("row %d %s lost: %v", id, col, err)
			}
		}
	}
	t.Logf("%d values were moved before the crash", moved)
	res, err := Run(testCtx(t), job(dsn, good, oldK, newK, "after"))
	if err != nil || res.Reencrypted+res.AlreadyNew != 2*n {
		t.Fatalf("%v %+v", err, res)
	}
	checkDecrypts(t, conn, "patients", newC, n, "email", "ssn")

	// A program that cannot start.
	cfg := good
	cfg.Command = []string{filepath.Join(t.TempDir(), "missing")}
	if _, err := Run(testCtx(t), job(dsn, cfg, oldK, newK, "missing")); err == nil || rekey.ErrorCode(err) != rekey.CodeInvalid {
		t.Fatalf("missing program: %v", err)
	}
}
