package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// A profile is where the machine's CPU went during one run of a method,
// from perf sampling every CPU with call stacks: each sample is put in the
// first work whose functions are on its stack (index builds, COPY into
// staging, COPY out of production, foreign-key checks, …), or named by its
// process. PostgreSQL's own timings say how long each statement took; a
// profile says what the cores did meanwhile, both servers and every tool
// together, so that "the work itself" is a number and not a guess.
type profile struct {
	samples int
	by      map[string]int
	// grow counts the samples in the kernel growing a file by a page
	// (PostgreSQL extending a table or an index, a sort's temporary
	// file): on a virtual machine, touching new page-cache memory is slow.
	grow int
}

// work is what a PostgreSQL process's sample was doing, by the functions
// on its stack; the first that matches wins.
var work = []struct {
	name string
	fns  []string
}{
	{"index builds", []string{"btbuild", "ginbuild", "gistbuild", "hashbuild", "spgbuild", "brinbuild", "index_build",
		// PostgreSQL's parallel workers joining a build.
		"_bt_parallel_build_main", "_gin_parallel_build_main", "_brin_parallel_build_main"}},
	{"COPY into staging", []string{"CopyFrom"}},
	{"COPY out of production", []string{"DoCopyTo", "CopyOneRowTo", "BeginCopyTo"}},
	{"foreign-key checks", []string{"RI_Initial_Check", "RI_FKey_check", "validateForeignKeyConstraint"}},
	{"ANALYZE", []string{"analyze_rel", "do_analyze_rel", "acquire_sample_rows"}},
	{"VACUUM", []string{"heap_vacuum_rel", "lazy_scan_heap", "vacuum_rel"}},
	{"other parallel workers", []string{"ParallelWorkerMain"}},
	{"checkpointer, WAL and background writers", []string{"CheckpointerMain", "BackgroundWriterMain", "WalWriterMain", "XLogBackgroundFlush"}},
}

// perfHz is how often perf samples each CPU: a sample is 1/perfHz of a
// CPU-second.
const perfHz = 499

// growFns are where PostgreSQL writes a page past a file's end.
var growFns = []string{"mdextend", "mdzeroextend", "BufFileWrite"}

// perfTools says what a run under perf needs, or why it cannot run:
// perf itself, and leave to sample every CPU (root, or
// kernel.perf_event_paranoid at -1). Checked before anything starts.
func perfTools(ctx context.Context, dir string) error {
	if _, err := exec.LookPath("perf"); err != nil {
		return errors.New("-profile needs perf: install Debian's linux-perf package (make perf does, as root)")
	}
	data := filepath.Join(dir, "perf-probe.data")
	defer os.Remove(data)
	out, err := exec.CommandContext(ctx, "perf", "record", "-a", "-e", "cpu-clock", "-o", data, "--", "true").CombinedOutput()
	if err != nil {
		return fmt.Errorf("perf cannot sample every CPU here: run as root, or set kernel.perf_event_paranoid to -1 (sudo sysctl kernel.perf_event_paranoid=-1); in a container, the container must be let call perf_event_open too (docker run --privileged)\n%s", out)
	}
	return nil
}

// recording is perf record sampling every CPU until stopped.
type recording struct {
	cmd    *exec.Cmd
	data   string
	stderr strings.Builder
	done   chan error
}

// record starts perf record on every CPU with call stacks, writing to
// data. The cpu-clock event ticks at the same rate on an idle core as on
// a busy one, so every sample is 1/perfHz of a CPU-second and idle is
// counted, with or without a hardware PMU.
func record(ctx context.Context, data string) (*recording, error) {
	// Without a command to run, perf record samples until interrupted.
	r := &recording{data: data, done: make(chan error, 1)}
	r.cmd = exec.CommandContext(ctx, "perf", "record", "-a", "-g", "-e", "cpu-clock", "-F", fmt.Sprint(perfHz), "-o", data)
	r.cmd.Stderr = &r.stderr
	if err := r.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { r.done <- r.cmd.Wait() }()
	// perf opens its events before the work starts; one that exits
	// meanwhile could not.
	select {
	case err := <-r.done:
		return nil, fmt.Errorf("perf record stopped before the run: %v\n%s", err, r.stderr.String())
	case <-time.After(300 * time.Millisecond):
	}
	return r, nil
}

// stop ends the recording and reads its samples.
func (r *recording) stop(ctx context.Context) (*profile, error) {
	r.cmd.Process.Signal(syscall.SIGINT) // perf writes its file and exits
	if err := <-r.done; err != nil {
		if st, serr := os.Stat(r.data); serr != nil || st.Size() == 0 {
			return nil, fmt.Errorf("perf record: %w\n%s", err, r.stderr.String())
		}
	}
	return perfScript(ctx, r.data)
}

// perfScript reads a recording's samples through perf script; perf's own
// words say why when it cannot.
func perfScript(ctx context.Context, data string) (*profile, error) {
	script := exec.CommandContext(ctx, "perf", "script", "-i", data, "-F", "comm,pid,ip,sym")
	out, err := script.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr strings.Builder
	script.Stderr = &stderr
	if err := script.Start(); err != nil {
		return nil, err
	}
	p, perr := readPerfScript(out)
	io.Copy(io.Discard, out) // let perf finish writing after an error
	if err := script.Wait(); err != nil {
		return nil, fmt.Errorf("perf script: %w\n%s", err, strings.TrimSpace(stderr.String()))
	}
	return p, perr
}

// profiled runs one method under perf and says where the CPU went.
func (b *env) profiled(ctx context.Context, m method) (*profile, error) {
	data := filepath.Join(b.dir, "perf.data")
	defer os.Remove(data)
	rec, err := record(ctx, data)
	if err != nil {
		return nil, err
	}
	_, runErr := m.run(b, ctx)
	p, err := rec.stop(ctx)
	if runErr != nil {
		return nil, runErr
	}
	return p, err
}

// readPerfScript reads perf script's output (-F comm,pid,ip,sym): a line
// naming the process, then its stack a frame a line, innermost first, and
// a blank line.
func readPerfScript(r io.Reader) (*profile, error) {
	p := &profile{by: map[string]int{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	comm, in := "", false
	var stack []string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			if in {
				p.add(comm, stack)
			}
			comm, in, stack = "", false, stack[:0]
		case line[0] != ' ' && line[0] != '\t':
			f := strings.Fields(line)
			comm, in = strings.Join(f[:max(1, len(f)-1)], " "), true
		default:
			if f := strings.Fields(line); len(f) >= 2 {
				stack = append(stack, f[1])
			}
		}
	}
	if in {
		p.add(comm, stack)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading perf script's output: %w", err)
	}
	if p.samples == 0 {
		return nil, errors.New("perf recorded no samples")
	}
	return p, nil
}

// add counts one sample.
func (p *profile) add(comm string, stack []string) {
	p.samples++
	if comm == "postgres" && slices.ContainsFunc(stack, func(fn string) bool { return slices.Contains(growFns, fn) }) {
		p.grow++
	}
	p.by[sampleWork(comm, stack)]++
}

// sampleWork names what a sample was doing.
func sampleWork(comm string, stack []string) string {
	switch {
	case comm == "swapper":
		return "idle"
	case comm == "stagebot":
		return "the bot"
	case comm != "postgres":
		if strings.HasPrefix(comm, "pg") || comm == "psql" {
			return "the tool (" + comm + ")"
		}
		return "other processes"
	}
	for _, w := range work {
		if slices.ContainsFunc(stack, func(fn string) bool { return slices.Contains(w.fns, fn) }) {
			return w.name
		}
	}
	return "other PostgreSQL work (connections, catalogs, DDL)"
}

// print writes the profile as one line of shares, largest first.
func (p *profile) print(w io.Writer, method string) {
	type share struct {
		name string
		n    int
	}
	var all []share
	for name, n := range p.by {
		all = append(all, share{name, n})
	}
	slices.SortFunc(all, func(a, b share) int {
		if a.n != b.n {
			return b.n - a.n
		}
		return strings.Compare(a.name, b.name)
	})
	parts := make([]string, 0, len(all))
	for _, s := range all {
		parts = append(parts, fmt.Sprintf("%s %s", s.name, p.cpu(s.n)))
	}
	fmt.Fprintf(w, "\nCPU of %s, one more run under perf (not timed; both servers, the tools and the bot: CPU-seconds and share of the machine):\n  %s\n", method, strings.Join(parts, " · "))
	fmt.Fprintf(w, "  of all of it, the kernel growing PostgreSQL's files (tables, indexes, sort files) a page at a time: %s\n", p.cpu(p.grow))
}

// cpu says n samples in CPU-seconds and as a share of all.
func (p *profile) cpu(n int) string {
	return fmt.Sprintf("%.2fs (%.1f%%)", float64(n)/perfHz, 100*float64(n)/float64(p.samples))
}
