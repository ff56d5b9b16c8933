package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/stagebot/stagebot/runner"
)

// Source says where a refresh copies from: production's live database (all
// fields empty), one backup file, or the newest file in a directory.
type Source struct {
	File    string
	Dir     string
	Pattern string // with Dir: a glob, default "*"
}

// Refresh is the pg_refresh step: it restores the source into the shadow
// database. The swap comes later, in a pg_swap step.
type Refresh struct {
	StepName string
	Target   *Target
	Source   Source
	// Method copies a live database: MethodStream (default) or MethodDump.
	Method string
}

var (
	_ runner.Step     = (*Refresh)(nil)
	_ runner.Finisher = (*Refresh)(nil)
)

// Name implements runner.Step.
func (r *Refresh) Name() string { return r.StepName }

// Kind implements runner.Step.
func (r *Refresh) Kind() string { return "pg_refresh" }

func (r *Refresh) live() bool { return r.Source.File == "" && r.Source.Dir == "" }

// resolveFile finds the backup file to restore.
func (r *Refresh) resolveFile() (string, error) {
	if r.Source.File != "" {
		if _, err := os.Stat(r.Source.File); err != nil {
			return "", fmt.Errorf("backup %s: %w", r.Source.File, errors.Unwrap(err))
		}
		return r.Source.File, nil
	}
	pattern := r.Source.Pattern
	if pattern == "" {
		pattern = "*"
	}
	matches, err := filepath.Glob(filepath.Join(r.Source.Dir, pattern))
	if err != nil {
		return "", fmt.Errorf("pattern %q: %w", pattern, err)
	}
	var newest string
	var newestT time.Time
	for _, m := range matches {
		st, err := os.Stat(m)
		if err != nil {
			continue
		}
		if newest == "" || st.ModTime().After(newestT) {
			newest, newestT = m, st.ModTime()
		}
	}
	if newest == "" {
		return "", fmt.Errorf("no backup matching %s in %s", pattern, r.Source.Dir)
	}
	return newest, nil
}

// Plan implements runner.Step: it connects to both servers and checks the
// guards, the roles and the tools, changing nothing.
func (r *Refresh) Plan(ctx context.Context) (string, error) {
	t := r.Target
	_, next, _, err := t.names()
	if err != nil {
		return "refresh staging", err
	}
	var desc, file string
	var fm format
	if r.live() {
		how := "streamed server to server"
		if r.Method == MethodDump {
			how = "pg_dump/pg_restore"
		}
		desc = fmt.Sprintf("copy production %s into %s on %s (%s, %d jobs), then swap", Describe(t.ProductionDSN), next, Describe(t.StagingDSN), how, t.jobs())
	} else {
		if file, err = r.resolveFile(); err != nil {
			return "restore a backup into " + next, err
		}
		if fm, err = sniff(file); err != nil {
			return "restore " + file + " into " + next, err
		}
		desc = fmt.Sprintf("restore %s (%s) into %s on %s, then swap", file, fm, next, Describe(t.StagingDSN))
	}
	tl, err := t.tools()
	if err != nil {
		return desc, err
	}
	if err := t.Guard(ctx); err != nil {
		return desc, err
	}
	if r.live() {
		missing, err := t.MissingRoles(ctx)
		if err != nil {
			return desc, err
		}
		if len(missing) > 0 {
			return desc, fmt.Errorf("staging lacks roles production uses: %s; create them on staging, or set no_owner/no_acl on the target", strings.Join(missing, ", "))
		}
		if room := t.roomPlan(ctx); room != "" {
			desc += "\n" + room
		} else if warn, err := t.diskPlan(ctx); err != nil {
			desc += "\nwarning: could not tell whether the copy fits: " + err.Error()
		} else if warn != "" {
			desc += "\n" + warn
		}
		return desc, nil
	}
	missing, err := r.fileRoles(ctx, tl, file, fm)
	if err != nil {
		return desc, err
	}
	if len(missing) > 0 {
		return desc, fmt.Errorf("staging lacks roles the backup uses: %s; create them on staging, or set no_owner/no_acl on the target", strings.Join(missing, ", "))
	}
	if room := t.roomPlan(ctx); room != "" {
		desc += "\n" + room
	}
	return desc, nil
}

// archiveRole finds the role in pg_restore's statements that give an
// object (the database too) an owner or privileges, or settings in the
// database.
var archiveRole = regexp.MustCompile(`^(?:ALTER .* OWNER TO|GRANT .* TO|ALTER ROLE) ("(?:[^"]|"")+"|[^ ;]+)(?: WITH GRANT OPTION;| IN DATABASE .*;|;)$`)

// fileRoles lists the roles a pg_dump archive (custom or directory format)
// gives objects to, grants privileges to or gives settings in the database
// that staging lacks, from the archive's schema alone. Plain SQL files are
// checked as they are restored: reading a whole file (data and all) to plan
// would take as long as the restore.
func (r *Refresh) fileRoles(ctx context.Context, tl tools, path string, fm format) ([]string, error) {
	t := r.Target
	if !(fm.dir || fm.custom) {
		return nil, nil
	}
	schema, err := r.archiveSchema(ctx, tl, path, fm)
	if err != nil {
		return nil, err
	}
	want := map[string]string{}
	for _, line := range strings.Split(schema, "\n") {
		m := archiveRole.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		role := m[1]
		if strings.HasPrefix(role, `"`) {
			role = strings.ReplaceAll(role[1:len(role)-1], `""`, `"`)
		}
		switch {
		case role == "PUBLIC":
		case strings.HasPrefix(line, "ALTER ROLE "):
			want[role] = "has settings in the database"
		case strings.HasPrefix(line, "ALTER "):
			want[role] = "owns objects"
		default:
			if _, ok := want[role]; !ok {
				want[role] = "has privileges"
			}
		}
	}
	return t.lacking(ctx, want)
}

// Run implements runner.Step. A copy that runs out of space says what
// stagebot keeps on staging's server that could make room.
func (r *Refresh) Run(ctx context.Context, env *runner.Env) error {
	err := r.Target.explainDiskFull(ctx, r.run(ctx, env))
	if err != nil && ctx.Err() == nil && !diskFull(err) {
		// A server that went down mid-copy ("use of closed network
		// connection", say) is named as down.
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if perr := r.Probe(pctx); perr != nil {
			err = fmt.Errorf("%w; %v", err, perr)
		}
	}
	return err
}

func (r *Refresh) run(ctx context.Context, env *runner.Env) error {
	t := r.Target
	tl, err := t.tools()
	if err != nil {
		return err
	}
	_, next, _, err := t.names()
	if err != nil {
		return err
	}
	if err := r.maskedSource(); err != nil {
		return err
	}
	if err := r.prepare(ctx, env); err != nil {
		return err
	}
	file := ""
	if !r.live() {
		if file, err = r.resolveFile(); err != nil {
			return err
		}
	}
	// The database's own properties are read beside the copy and given to
	// the shadow once its data is in.
	props := r.readProps(ctx, env, tl, file)
	prog := newProgressPoller(t, next, env)
	if err := r.copyData(ctx, env, tl, next, file, prog); err != nil {
		props.abandon()
		return err
	}
	if err := props.apply(ctx, env, next); err != nil {
		return err
	}
	prog.logSize(ctx)
	return nil
}

// prepare repairs what an earlier run left while staging's server was
// away, and makes room for the copy (keep_previous: space_permitting).
func (r *Refresh) prepare(ctx context.Context, env *runner.Env) error {
	t := r.Target
	if t.stopRepair() {
		did, err := t.Recover(ctx)
		if err != nil {
			return fmt.Errorf("repair what an earlier run left: %w", err)
		}
		if did != "" {
			fmt.Fprintf(env.Log, "repaired what an earlier run left: %s\n", did)
		}
	}
	if err := t.makeRoom(ctx, env); err != nil {
		return fmt.Errorf("make room for the copy: %w", err)
	}
	return nil
}

// copyData fills the shadow: the streaming method creates it while it
// reads production, reports its own progress and analyzes each table as
// it goes; pg_dump/pg_restore and backup files restore into a shadow
// created first, polled for progress, analyzed at the end.
func (r *Refresh) copyData(ctx context.Context, env *runner.Env, tl tools, next, file string, prog *progressPoller) error {
	t := r.Target
	if r.live() && r.Method != MethodDump {
		return r.stream(ctx, env, tl, next)
	}
	// A masked pg_dump reads at a snapshot held for the proof.
	var held *heldSnapshot
	if r.live() && t.Masking != nil {
		var err error
		if held, err = t.holdSnapshot(ctx); err != nil {
			return err
		}
		defer held.close(ctx)
	}
	if err := t.createShadow(ctx, env); err != nil {
		return err
	}
	var err error
	if r.live() {
		err = prog.around(ctx, true, func() error { return r.dumpRestore(ctx, env, tl, next, held) })
	} else {
		err = prog.around(ctx, false, func() error { return r.restoreFile(ctx, env, tl, file, next, prog) })
	}
	if err != nil {
		return err
	}
	if err := t.analyze(ctx, env, next); err != nil {
		return err
	}
	return t.scanMaskedShadow(ctx, env, next, held)
}

// pendingProps are the database-level properties being read beside the
// copy.
type pendingProps struct {
	t    *Target
	done chan propsResult
}

type propsResult struct {
	stmts []string
	err   error
}

// readProps starts reading the source database's own properties.
func (r *Refresh) readProps(ctx context.Context, env *runner.Env, tl tools, file string) *pendingProps {
	p := &pendingProps{t: r.Target, done: make(chan propsResult, 1)}
	go func() {
		var res propsResult
		if r.live() {
			res.stmts, res.err = r.liveProps(ctx, env, tl)
		} else {
			res.stmts, res.err = r.fileProps(ctx, tl, file)
		}
		p.done <- res
	}()
	return p
}

// apply gives the properties to the shadow once they are read.
func (p *pendingProps) apply(ctx context.Context, env *runner.Env, next string) error {
	res := <-p.done
	if res.err != nil {
		return res.err
	}
	return p.t.applyProps(ctx, env, next, res.stmts)
}

// abandon waits for the reading to end after the copy failed.
func (p *pendingProps) abandon() { <-p.done }

// fileProps reads the database-level properties of a custom or directory
// archive. A plain SQL file carries them inline (sqlFilter points them at
// the shadow).
func (r *Refresh) fileProps(ctx context.Context, tl tools, path string) ([]string, error) {
	fm, err := sniff(path)
	if err != nil || !(fm.custom || fm.dir) {
		return nil, err
	}
	schema, err := r.archiveSchema(ctx, tl, path, fm)
	if err != nil {
		return nil, err
	}
	return databaseProps(schema), nil
}

// Finish implements runner.Finisher: whatever happened, no shadow is left
// behind (after a swap there is none).
func (r *Refresh) Finish(ctx context.Context, env *runner.Env, runErr error) error {
	if runErr != nil {
		fmt.Fprintf(env.Log, "the run did not finish: dropping the shadow database\n")
	}
	if err := r.Target.DropShadow(ctx); err != nil {
		// Staging's server is gone: the shadow goes when it is back.
		r.Target.repairLater(env.Run, err)
		_, next, _, _ := r.Target.names()
		return fmt.Errorf("the unfinished copy %s could not be dropped (%w): stagebot drops it as soon as staging's server answers again, and says so", next, err)
	}
	return nil
}

// createShadow makes an empty shadow database with production's encoding
// and locale, and records that this run made it. Its other database-level
// properties come at the end (applyProps).
func (t *Target) createShadow(ctx context.Context, env *runner.Env) error {
	_, next, _, err := t.names()
	if err != nil {
		return err
	}
	start := time.Now()
	encoding, collate, ctype, provider, icu := "UTF8", "", "", "", ""
	if p, err := t.production(ctx); err == nil {
		q := `select pg_encoding_to_char(encoding), datcollate, datctype, '', '' from pg_database where datname = current_database()`
		if majorVersion(p) >= 15 {
			q = `select pg_encoding_to_char(encoding), datcollate, datctype, datlocprovider::text, coalesce(daticulocale, '') from pg_database where datname = current_database()`
		}
		err := p.QueryRow(ctx, q).Scan(&encoding, &collate, &ctype, &provider, &icu)
		p.Close(ctx)
		if err != nil {
			return fmt.Errorf("production: read the database's encoding and locale: %w", err)
		}
	} else if t.ProductionDSN != "" {
		return err
	}
	c, err := t.maintenance(ctx)
	if err != nil {
		return err
	}
	defer c.Close(ctx)
	if err := dropDatabase(ctx, c, next); err != nil {
		return err
	}
	create := fmt.Sprintf("create database %s template template0 encoding %s", quoteIdent(next), quoteLiteral(encoding))
	if collate != "" {
		create += fmt.Sprintf(" lc_collate %s lc_ctype %s", quoteLiteral(collate), quoteLiteral(ctype))
	}
	if provider == "i" && majorVersion(c) >= 15 {
		create += " locale_provider icu icu_locale " + quoteLiteral(icu)
	}
	if _, err := c.Exec(ctx, create); err != nil {
		return fmt.Errorf("create %s: %w", next, err)
	}
	if err := t.record(ctx, c, next, env.Run); err != nil {
		return err
	}
	fmt.Fprintf(env.Log, "created %s (%s) in %s\n", next, encoding, time.Since(start).Round(time.Millisecond))
	return nil
}

func (r *Refresh) restoreArgs(conn string) []string {
	args := []string{"--exit-on-error", "--no-password", "-d", conn}
	if r.Target.NoOwner {
		args = append(args, "--no-owner")
	}
	if r.Target.NoACL {
		args = append(args, "--no-acl")
	}
	return args
}

// dumpRestore copies production with pg_dump -Fd -j into a temporary
// directory and pg_restore -j from it.
func (r *Refresh) dumpRestore(ctx context.Context, env *runner.Env, tl tools, next string, held *heldSnapshot) error {
	t := r.Target
	if t.Masking != nil {
		return r.maskedRestore(ctx, env, tl, next, r.dumpSource(env, tl, held))
	}
	dir, err := os.MkdirTemp(t.WorkDir, "stagebot-dump-")
	if err != nil {
		return fmt.Errorf("make dump directory: %w", err)
	}
	defer os.RemoveAll(dir)
	pconn, penv, releaseProd, err := libpq(t.ProductionDSN, "", readOnly)
	if err != nil {
		return err
	}
	defer releaseProd()
	out := filepath.Join(dir, "dump")
	jobs := strconv.Itoa(t.jobs())
	fmt.Fprintf(env.Log, "pg_dump -Fd -j %s from %s\n", jobs, Describe(t.ProductionDSN))
	if err := runTool(ctx, tool(ctx, env, penv, tl.dump, "-Fd", "-j", jobs, "--no-password", "-f", out, "-d", pconn)); err != nil {
		return fmt.Errorf("pg_dump: %w", err)
	}
	sconn, senv, releaseStg, err := libpq(t.StagingDSN, next)
	if err != nil {
		return err
	}
	defer releaseStg()
	fmt.Fprintf(env.Log, "pg_restore -j %s into %s\n", jobs, next)
	args := append(r.restoreArgs(sconn), "-j", jobs, out)
	if err := runTool(ctx, tool(ctx, env, senv, tl.restore, args...)); err != nil {
		return fmt.Errorf("pg_restore: %w", err)
	}
	return nil
}

// restoreFile restores a backup file of any supported format.
func (r *Refresh) restoreFile(ctx context.Context, env *runner.Env, tl tools, path, next string, prog *progressPoller) error {
	format, err := sniff(path)
	if err != nil {
		return err
	}
	if r.Target.Masking != nil {
		fmt.Fprintf(env.Log, "restoring %s (%s) into %s, masked on its way in\n", path, format, next)
		return r.maskedRestore(ctx, env, tl, next, r.fileSource(env, tl, path, format, prog))
	}
	sconn, senv, releaseStg, err := libpq(r.Target.StagingDSN, next)
	if err != nil {
		return err
	}
	defer releaseStg()
	jobs := strconv.Itoa(r.Target.jobs())
	fmt.Fprintf(env.Log, "restoring %s (%s) into %s\n", path, format, next)
	if format.dir || (format.custom && format.compression == "") {
		// pg_restore reads these itself (-j workers seek in them): what
		// it has read is taken from /proc.
		args := append(r.restoreArgs(sconn), "-j", jobs, path)
		if err := runReading(ctx, tool(ctx, env, senv, tl.restore, args...), backupSize(path), prog); err != nil {
			return fmt.Errorf("pg_restore: %w", err)
		}
		return nil
	}
	// A compressed file is streamed through the decompressor into the tool's
	// standard input: nothing is unpacked to disk.
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, _ := f.Stat()
	counted := &countingReader{r: f, total: st.Size(), prog: prog}
	plain, err := decompress(counted, format.compression)
	if err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	var cmd *exec.Cmd
	var sqlCheck *sqlFilter
	if format.custom {
		cmd = tool(ctx, env, senv, tl.restore, r.restoreArgs(sconn)...)
	} else {
		sqlCheck = &sqlFilter{db: next, noOwner: r.Target.NoOwner, noACL: r.Target.NoACL}
		cmd = tool(ctx, env, senv, tl.psql, "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-d", sconn)
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	var copyErr error
	if sqlCheck != nil {
		copyErr = sqlCheck.copy(stdin, plain)
	} else {
		_, copyErr = io.Copy(stdin, plain)
	}
	if copyErr != nil {
		// Make the tool stop rather than commit what it has.
		cmd.Process.Signal(syscall.SIGKILL)
	}
	stdin.Close()
	waitErr := cmd.Wait()
	switch {
	case copyErr != nil && !errors.Is(copyErr, errBrokenPipe):
		return fmt.Errorf("the backup %s is unreadable: %w", filepath.Base(path), copyErr)
	case waitErr != nil:
		return fmt.Errorf("%s: %w", filepath.Base(cmd.Path), cmdErrOf(ctx, waitErr, cmd))
	case sqlCheck != nil && !sqlCheck.complete:
		return fmt.Errorf("the backup %s is incomplete: it ends without pg_dump's \"dump complete\" line", filepath.Base(path))
	}
	return nil
}

type countingReader struct {
	r     io.Reader
	n     int64
	total int64
	prog  *progressPoller
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.prog.fileRead(c.n, c.total)
	return n, err
}

var errBrokenPipe = errors.New("broken pipe")

// sqlFilter passes a plain SQL dump to psql, leaving out what would touch
// other databases (CREATE/DROP DATABASE, \connect) and, when asked, ownership
// and privileges. It notes whether the dump's closing line was seen.
type sqlFilter struct {
	db             string
	noOwner, noACL bool
	complete       bool
	inCopy         bool
	inStatement    bool // within a statement that started on an earlier line
}

func (f *sqlFilter) copy(w io.Writer, r io.Reader) error {
	br := bufio.NewReaderSize(r, 1<<20)
	bw := bufio.NewWriterSize(w, 1<<20)
	for {
		line, err := br.ReadString('\n')
		if len(line) > 0 {
			if out := f.filter(line); out != "" {
				if _, werr := bw.WriteString(out); werr != nil {
					return errBrokenPipe
				}
			}
		}
		if errors.Is(err, io.EOF) {
			if bw.Flush() != nil {
				return errBrokenPipe
			}
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (f *sqlFilter) filter(line string) string {
	if f.inCopy {
		if line == "\\.\n" {
			f.inCopy = false
		}
		return line
	}
	start := !f.inStatement
	trimmed := strings.TrimSpace(line)
	switch {
	case trimmed == "", strings.HasPrefix(trimmed, "--"):
	case strings.HasPrefix(line, "\\"):
		f.inStatement = false
	default:
		f.inStatement = !strings.HasSuffix(trimmed, ";")
	}
	if !start {
		return line
	}
	switch {
	case strings.HasPrefix(line, "COPY ") && strings.HasSuffix(line, "FROM stdin;\n"):
		f.inCopy = true
	case strings.HasPrefix(line, "-- PostgreSQL database dump complete"):
		f.complete = true
	case strings.HasPrefix(line, "CREATE DATABASE "), strings.HasPrefix(line, "DROP DATABASE "),
		strings.HasPrefix(line, `\connect `), strings.HasPrefix(line, `\c `):
		return "-- (left out by stagebot) " + line
	case f.noOwner && strings.HasPrefix(line, "ALTER ") && strings.Contains(line, " OWNER TO "):
		return ""
	case f.noACL && (strings.HasPrefix(line, "GRANT ") || strings.HasPrefix(line, "REVOKE ")):
		return ""
	default:
		// The dumped database's own properties (settings, per-role
		// settings, owner, privileges, comment) go to the shadow, never to
		// the database of that name, which may be staging in use.
		if out, ok := retarget(line, f.db); ok {
			return out
		}
	}
	return line
}
