package scan

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// catBlobs reads the given objects through one `git cat-file --batch`
// process. A blob of at most wholeLimit bytes is given whole to small (data
// is reused, and zeroed, after small returns); a larger one is given to
// large as a reader of its content, which large need not read to its end.
// Missing objects are skipped.
func catBlobs(ctx context.Context, root string, oids []string, small func(oid string, data []byte), large func(oid string, r io.Reader, size int64) error) error {
	if len(oids) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Bound git's memory: its default delta cache (96 MiB) and pack windows
	// dominate the scan's peak RSS; these limits cost no speed measured here.
	// core.bigFileThreshold: git streams a packed blob only above it (else
	// it inflates the whole blob in memory first: 400 MiB for a 400 MB
	// blob); a blob stored as a delta is still inflated whole by git.
	cmd := gitCmd(ctx, root, []string{"-c", "core.deltaBaseCacheLimit=16m", "-c", "core.packedGitWindowSize=16m", "-c", "core.packedGitLimit=64m",
		"-c", "core.bigFileThreshold=" + strconv.Itoa(wholeLimit), "cat-file", "--batch"})
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() {
		w := bufio.NewWriter(stdin)
		for _, oid := range oids {
			if _, err := w.WriteString(oid + "\n"); err != nil {
				break
			}
		}
		_ = w.Flush()
		_ = stdin.Close()
	}()
	readErr := readObjects(ctx, bufio.NewReaderSize(stdout, 1<<16), small, large)
	if readErr != nil {
		cancel()
		_ = cmd.Wait()
		return fmt.Errorf("scan: git cat-file: %w", readErr)
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("scan: git cat-file: %w: %s", err, firstLine(stderr.String()))
	}
	return nil
}

// readObjects reads the output of `git cat-file --batch` and hands each blob
// to small or large, as catBlobs says. The buffer of small blobs is zeroed
// before it returns.
func readObjects(ctx context.Context, r *bufio.Reader, small func(oid string, data []byte), large func(oid string, r io.Reader, size int64) error) error {
	var buf []byte
	defer func() { clear(buf) }()
	for {
		hdr, err := r.ReadString('\n')
		if err == io.EOF && hdr == "" {
			return nil
		}
		if err != nil {
			return err
		}
		f := strings.Fields(hdr)
		if len(f) == 2 && f[1] == "missing" {
			continue
		}
		if len(f) != 3 {
			return fmt.Errorf("scan: unexpected git cat-file header")
		}
		size, err := strconv.Atoi(f[2])
		if err != nil {
			return fmt.Errorf("scan: unexpected git cat-file header")
		}
		if size > wholeLimit {
			if err := readLarge(r, f[0], f[1] == "blob", size, large); err != nil {
				return err
			}
		} else {
			if cap(buf) < size+1 {
				clear(buf)
				buf = make([]byte, size+1)
			}
			data := buf[:size+1]
			if _, err := io.ReadFull(r, data); err != nil {
				return err
			}
			data = data[:size] // drop the trailing newline
			if f[1] == "blob" {
				small(f[0], data)
			}
			clear(data)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// readLarge hands an object of size bytes to large as a reader (when it is
// a blob), then skips what large left of it and its trailing newline.
func readLarge(r *bufio.Reader, oid string, blob bool, size int, large func(oid string, r io.Reader, size int64) error) error {
	lr := &io.LimitedReader{R: r, N: int64(size)}
	if blob {
		if err := large(oid, lr, int64(size)); err != nil {
			return err
		}
	}
	if _, err := io.Copy(io.Discard, lr); err != nil {
		return err
	}
	if c, err := r.ReadByte(); err != nil || c != '\n' {
		return fmt.Errorf("scan: unexpected git cat-file output")
	}
	return nil
}
