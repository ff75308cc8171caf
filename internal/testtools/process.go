package testtools

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// waitDelay bounds how long stopping a process waits for its output pipes
// to close after it was killed (a grandchild may hold them open).
const waitDelay = 5 * time.Second

// Process is a child process started by StartProcess. It is killed and
// waited for when the test ends.
type Process struct {
	// Name is the base name of the executable, for messages.
	Name string
	// Cmd is the started command. Do not call Wait on it: Process owns that.
	Cmd *exec.Cmd

	out  *syncBuffer
	done chan struct{} // closed when the process has exited and err is set
	err  error         // result of Cmd.Wait, valid after done is closed
}

// StartProcess starts path with args, its stdout and stderr captured in one
// buffer that is logged if the test fails. The process is killed when ctx
// ends or when the test ends, whichever is first; the test's cleanup waits
// for it, so no process outlives its test.
func StartProcess(t testing.TB, ctx context.Context, path string, args ...string) *Process {
	t.Helper()
	cmd := exec.CommandContext(ctx, path, args...)
	p := &Process{
		Name: filepath.Base(path),
		Cmd:  cmd,
		out:  &syncBuffer{},
		done: make(chan struct{}),
	}
	cmd.Stdout = p.out
	cmd.Stderr = p.out
	cmd.WaitDelay = waitDelay
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", p.Name, err)
	}
	// The waiter is owned by the test's cleanup, which waits for done.
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s %q output:\n%s", p.Name, args, p.Output())
		}
	})
	return p
}

// Output returns everything the process has written to stdout and stderr
// so far.
func (p *Process) Output() string { return p.out.String() }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err returns the process's exit error; call it only after Done is closed.
func (p *Process) Err() error { return p.err }

// Wait waits for the process to exit on its own, at most timeout, and
// returns its exit error. On timeout the process is killed and an error
// saying so is returned.
func (p *Process) Wait(timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.done:
		return p.err
	case <-timer.C:
		p.stop()
		return errors.New(p.Name + " did not exit within " + timeout.String() + "; killed it")
	}
}

// stop kills the process if it still runs and waits for it to exit.
func (p *Process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	// An error here means it exited meanwhile; Wait below settles it.
	_ = p.Cmd.Process.Kill()
	<-p.done
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a child's
// stdout and stderr copiers and reads by the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
