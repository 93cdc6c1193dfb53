package reencrypt

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rekeyhq/rekey"
)

// commandCodec is the running program of the command codec: one process
// per Run or Count, requests pipelined on its stdin, answers read in order
// from its stdout (see "Command codec protocol" in the package doc).
type commandCodec struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser

	mu      sync.Mutex // orders writes and the waiter queue
	w       *bufio.Writer
	waiters chan chan reply

	dead    chan struct{}
	deadErr error // set before dead is closed
	once    sync.Once
	exited  chan struct{}

	stall     time.Duration // commandStall when started
	pending   atomic.Int64  // requests not answered yet
	lastReply atomic.Int64  // unix nanoseconds of the last answer (or request when idle)
}

type reply struct {
	ok   bool
	data []byte
	err  error // protocol failure (not "err" answers)
}

const (
	maxReplyLine   = 64 << 20
	commandTimeout = 5 * time.Second // for the program to exit once its stdin is closed
)

// commandStall is how long the program may leave requests unanswered
// before it is killed (and the run fails).
var commandStall = time.Minute

// errCommand classifies failures of the command codec's program.
var errCommand = errors.New("command codec failed")

// startCommand starts argv with stdin/stdout pipes; its stderr goes to
// stderr (os.Stderr when nil). Nothing secret is on its command line, and
// its environment is rekey's without rekey's key material.
func startCommand(argv []string, stderr io.Writer) (*commandCodec, error) {
	if stderr == nil {
		stderr = os.Stderr
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = rekey.ChildEnv(os.Environ()) // never rekey's key material
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, rekey.Wrap(rekey.CodeInternal, err, "reencrypt: command codec")
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, rekey.Wrap(rekey.CodeInternal, err, "reencrypt: command codec")
	}
	if err := cmd.Start(); err != nil {
		return nil, rekey.Wrap(rekey.CodeInvalid, err, "reencrypt: start the command codec %q", argv[0])
	}
	c := &commandCodec{
		cmd:     cmd,
		stdin:   stdin,
		w:       bufio.NewWriterSize(stdin, 64<<10),
		waiters: make(chan chan reply, 4096),
		dead:    make(chan struct{}),
		exited:  make(chan struct{}),
	}
	c.stall = commandStall
	c.lastReply.Store(time.Now().UnixNano())
	go c.readLoop(bufio.NewReaderSize(stdout, 64<<10))
	go c.watch()
	return c, nil
}

// watch kills the program when it leaves requests unanswered for
// commandStall.
func (c *commandCodec) watch() {
	tick := time.NewTicker(min(time.Second, c.stall/4))
	defer tick.Stop()
	for {
		select {
		case <-c.exited:
			return
		case <-tick.C:
			if c.pending.Load() > 0 && time.Since(time.Unix(0, c.lastReply.Load())) > c.stall {
				c.fail(rekey.Errorf(rekey.CodeInternal, "reencrypt: the command codec answered nothing for %s; it was stopped", c.stall))
				_ = c.cmd.Process.Kill()
				return
			}
		}
	}
}

func (c *commandCodec) fail(err error) {
	c.once.Do(func() {
		c.deadErr = err
		close(c.dead)
	})
}

func (c *commandCodec) readLoop(r *bufio.Reader) {
	defer func() {
		// Reap the process once its stdout is closed.
		_ = c.cmd.Wait()
		close(c.exited)
	}()
	for {
		line, err := readLine(r)
		if err != nil {
			if errors.Is(err, io.EOF) {
				c.fail(rekey.Wrap(rekey.CodeInternal, errCommand, "reencrypt: the command codec exited"))
			} else {
				c.fail(rekey.Wrap(rekey.CodeInternal, errCommand, "reencrypt: reading the command codec's answer: %v", err))
			}
			_, _ = io.Copy(io.Discard, r)
			return
		}
		var w chan reply
		select {
		case w = <-c.waiters:
		case <-c.dead:
			return
		}
		c.lastReply.Store(time.Now().UnixNano())
		c.pending.Add(-1)
		w <- parseReply(line)
	}
}

var errLineTooLong = errors.New("answer line too long")

func readLine(r *bufio.Reader) ([]byte, error) {
	var buf []byte
	for {
		frag, err := r.ReadSlice('\n')
		if err == nil {
			if buf == nil {
				return bytes.TrimSuffix(frag[:len(frag)-1], []byte("\r")), nil
			}
			buf = append(buf, frag[:len(frag)-1]...)
			return bytes.TrimSuffix(buf, []byte("\r")), nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, err
		}
		buf = append(buf, frag...)
		if len(buf) > maxReplyLine {
			return nil, errLineTooLong
		}
	}
}

func parseReply(line []byte) reply {
	verb, rest, _ := bytes.Cut(line, []byte(" "))
	switch string(verb) {
	case "ok":
		data, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(rest)))
		if err != nil {
			return reply{err: rekey.Wrap(rekey.CodeInternal, errCommand, "reencrypt: the command codec answered ok with invalid base64")}
		}
		return reply{ok: true, data: data}
	case "err":
		// The reason is the program's own words: it is not shown (it
		// could quote what it was given).
		return reply{}
	}
	return reply{err: rekey.Wrap(rekey.CodeInternal, errCommand, "reencrypt: the command codec answered something other than ok or err")}
}

// call sends one request and waits for its answer.
func (c *commandCodec) call(verb string, k, data []byte) reply {
	ch := make(chan reply, 1)
	line := make([]byte, 0, len(verb)+2+base64.StdEncoding.EncodedLen(len(k))+base64.StdEncoding.EncodedLen(len(data))+1)
	line = append(line, verb...)
	line = append(line, ' ')
	line = base64.StdEncoding.AppendEncode(line, k)
	line = append(line, ' ')
	line = base64.StdEncoding.AppendEncode(line, data)
	line = append(line, '\n')

	c.mu.Lock()
	select {
	case <-c.dead:
		c.mu.Unlock()
		return reply{err: c.deadErr}
	default:
	}
	_, err := c.w.Write(line)
	if err == nil {
		err = c.w.Flush()
	}
	if err != nil {
		c.mu.Unlock()
		c.fail(rekey.Wrap(rekey.CodeInternal, errCommand, "reencrypt: writing to the command codec: %v", err))
		return reply{err: c.deadErr}
	}
	if c.pending.Add(1) == 1 {
		c.lastReply.Store(time.Now().UnixNano()) // the clock starts with the first unanswered request
	}
	select {
	case c.waiters <- ch:
	case <-c.dead:
		c.mu.Unlock()
		return reply{err: c.deadErr}
	}
	c.mu.Unlock()
	select {
	case r := <-ch:
		return r
	case <-c.dead:
		select {
		case r := <-ch:
			return r
		default:
			return reply{err: c.deadErr}
		}
	}
}

// close ends the program: stdin closed (its cue to exit), then SIGKILL if
// it has not exited after commandTimeout.
func (c *commandCodec) close() error {
	c.mu.Lock()
	_ = c.w.Flush()
	_ = c.stdin.Close()
	c.mu.Unlock()
	select {
	case <-c.exited:
	case <-time.After(commandTimeout):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
	c.fail(rekey.Wrap(rekey.CodeInternal, errCommand, "reencrypt: the command codec was closed"))
	return nil
}

// commandKey is one key of the command codec.
type commandKey struct {
	cmd *commandCodec
	key []byte
}

func (k *commandKey) open(dst, raw []byte) ([]byte, uint64, error) {
	r := k.cmd.call("open", k.key, raw)
	if r.err != nil {
		return nil, 0, r.err
	}
	if !r.ok {
		return nil, 0, errNoOpen
	}
	return append(dst, r.data...), 0, nil
}

func (k *commandKey) seal(dst, pt []byte, _ uint64) ([]byte, error) {
	r := k.cmd.call("seal", k.key, pt)
	if r.err != nil {
		return nil, r.err
	}
	if !r.ok {
		return nil, rekey.Wrap(rekey.CodeInternal, errCommand, "reencrypt: the command codec refused to seal a value")
	}
	return append(dst, r.data...), nil
}
