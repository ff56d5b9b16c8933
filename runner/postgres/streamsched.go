package postgres

import (
	"cmp"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stagebot/stagebot/runner"
)

// splitSize is the size above which a table may be copied in several
// ranges; splitAlways (for tests) splits every such table.
var (
	splitSize   int64 = 256 << 20
	splitAlways       = false
)

// splitParts says in how many page ranges to copy a table of size bytes out
// of total. A range cannot be written FREEZE (that needs the one
// transaction that truncated the table), so every later reader pays for
// hint bits: a table is split only when, whole, it would keep one worker
// busy more than one and a half times as long as an even share of the work.
func splitParts(size, total int64, jobs int) int64 {
	if size <= splitSize || (!splitAlways && 2*size*int64(jobs) <= 3*total) {
		return 1
	}
	return min(int64(jobs)*2, (size+splitSize-1)/splitSize)
}

// streamer holds what the workers share: the plan's tables split into
// copy tasks, the queue of builds, and the locks the builds in flight hold.
type streamer struct {
	r        *Refresh
	env      *runner.Env
	plan     *streamPlan
	snapshot string
	next     string
	binary   bool
	preamble string
	objects  int64 // large objects
	// lz4: the shadow's server compresses TOASTed values with lz4.
	lz4     bool
	lz4Once sync.Once
	start   time.Time
	// maskNote is the masking proof's line, for the final report.
	maskNote string

	mu       sync.Mutex
	cond     *sync.Cond
	copies   []copyTask
	builds   []postEntry
	pending  int // copy tasks handed out but not finished
	building int // builds handed out but not finished
	err      error
	tables   int
	built    int
	fks      []*postEntry // foreign keys checked as their tables are ready
	parents  map[*streamTable][]*partitioned
	// The tables that builds in flight lock, counted by lock mode.
	held map[*streamTable]*[lockModes]int

	// Progress: what is done, against production's sizes.
	totalData, totalIndex int64
	totalRows             int64
	all                   []*streamTable
	indexes               int // entries built per table
	tablesDone            atomic.Int64
	indexDone             atomic.Int64
}

func newStreamer(r *Refresh, env *runner.Env, src *streamSource, p *streamPlan) *streamer {
	s := &streamer{r: r, env: env, plan: p, snapshot: src.snapshot, next: src.next, binary: p.binary, preamble: p.preamble,
		objects: src.largeObjects, start: src.start, fks: p.fks, parents: p.parents, all: p.tables, tables: len(p.tables)}
	s.cond = sync.NewCond(&s.mu)
	if p.binary {
		for _, tb := range p.tables {
			if tb.textOnly != "" {
				fmt.Fprintf(env.Log, "%s is copied in text format, not binary: its columns hold %s (no binary input/output, or a user-defined type inside an array or composite)\n", tb.name, tb.textOnly)
			}
		}
	}
	s.split(r.Target.jobs())
	return s
}

// split makes the copy tasks: a table in one, or a big one in page ranges
// (splitParts), and counts what progress is measured against.
func (s *streamer) split(jobs int) {
	var allData int64
	for _, tb := range s.all {
		allData += tb.size
	}
	for _, tb := range s.all {
		s.indexes += len(tb.entries)
		s.totalData += tb.size
		s.totalRows += max(tb.tuples, 0)
		for _, e := range tb.entries {
			s.totalIndex += e.size
		}
		parts := splitParts(tb.size, allData, jobs)
		if parts <= 1 || tb.pages < parts || tb.config {
			tb.pending = 1
			s.copies = append(s.copies, copyTask{table: tb, to: -1})
			continue
		}
		step := tb.pages / parts
		for i := int64(0); i < parts; i++ {
			task := copyTask{table: tb, from: i * step, to: (i + 1) * step, split: true}
			if i == parts-1 {
				task.to = -1
			}
			s.copies = append(s.copies, task)
		}
		tb.pending = int(parts)
	}
}

// queue adds builds (with s.mu held): the ones that take no time first
// (they let foreign keys be checked), then the longest: the longest build
// should not be the one left running alone at the end.
func (s *streamer) queue(e ...postEntry) {
	s.builds = append(s.builds, e...)
	slices.SortStableFunc(s.builds, func(a, b postEntry) int {
		if ta, tb := a.cost < tinyBuild, b.cost < tinyBuild; ta != tb {
			if ta {
				return -1
			}
			return 1
		}
		return cmp.Compare(b.cost, a.cost)
	})
}

// tinyBuild is the cost under which a build is done in an instant.
const tinyBuild = 1 << 20

// builtAll says that a table is copied and its indexes built (with s.mu
// held): its statistics are gathered next, and the indexes built for its
// constraints are made those constraints.
func (s *streamer) builtAll(tb *streamTable) {
	s.queue(analyzeEntry(tb))
	if tb.attaches() {
		s.queue(postEntry{name: tb.name, kind: kindAttach, table: tb})
		return
	}
	s.indexed(tb)
}

// indexed marks a table's constraints in place (with s.mu held): the
// foreign keys between it and other such tables are checked next.
func (s *streamer) indexed(tb *streamTable) {
	tb.indexed = true
	for _, fk := range s.fks {
		if !fk.queued && fk.table.indexed && fk.ref.indexed {
			fk.queued = true
			s.queue(*fk)
		}
	}
}

// attaches says whether some of the table's constraints are built as
// their indexes first.
func (tb *streamTable) attaches() bool {
	for _, e := range tb.entries {
		if e.attach != "" {
			return true
		}
	}
	return false
}

// analyzeEntry is the work item that gathers a table's statistics.
func analyzeEntry(tb *streamTable) postEntry {
	// It reads a sample of at most 30,000 pages (the default statistics
	// target).
	return postEntry{name: tb.name, kind: kindAnalyze, sql: "ANALYZE " + tb.name, table: tb, cost: min(tb.size, 30000*8192) / 32}
}

// A worker either copies tables or builds indexes: copies never wait
// behind builds, and builds start the moment a table is in.
type role int

const (
	copier role = iota
	builder
)

// lockMode is how a build locks its tables, from PostgreSQL's table lock
// modes: what a builder takes must not wait on what is in flight.
type lockMode int

const (
	// lockRead: ACCESS SHARE, a partitioned table's ANALYZE sampling its
	// partitions; only an ACCESS EXCLUSIVE lock waits for it.
	lockRead lockMode = iota
	// lockShare: SHARE, CREATE INDEX; index builds run beside each other.
	lockShare
	// lockExclusive: SHARE UPDATE EXCLUSIVE (ANALYZE) or SHARE ROW
	// EXCLUSIVE (a foreign key check): one at a time, and not beside an
	// index build.
	lockExclusive
	// lockAll: ACCESS EXCLUSIVE, making a built index a constraint.
	lockAll
	lockModes
)

// conflicts says whether locks in modes a and b wait for each other.
func conflicts(a, b lockMode) bool {
	switch {
	case a == lockAll || b == lockAll:
		return true
	case a == lockRead || b == lockRead:
		return false
	}
	return a == lockExclusive || b == lockExclusive
}

// locks are the tables a build locks, and how.
func (e *postEntry) locks() ([]*streamTable, lockMode) {
	switch {
	case e.reads != nil:
		return e.reads, lockRead
	case e.kind.isIndexBuild():
		return []*streamTable{e.table}, lockShare
	case e.kind == kindAttach:
		return []*streamTable{e.table}, lockAll
	case e.kind == kindFK:
		return []*streamTable{e.table, e.ref}, lockExclusive
	}
	return []*streamTable{e.table}, lockExclusive
}

// runnable is the first queued build whose locks do not conflict with the
// builds in flight, or -1 (with s.mu held). A builder that took a
// conflicting one would only wait on PostgreSQL's lock with a core idle:
// on a chain of foreign keys each check locks two tables, and every
// table's ANALYZE waits for the checks on it.
func (s *streamer) runnable() int {
	for i := range s.builds {
		tables, mode := s.builds[i].locks()
		ok := true
	tables:
		for _, t := range tables {
			if h := s.held[t]; t != nil && h != nil {
				for m := range lockModes {
					if h[m] > 0 && conflicts(mode, m) {
						ok = false
						break tables
					}
				}
			}
		}
		if ok {
			return i
		}
	}
	return -1
}

// lock counts a build's locks in (n = 1) or out (n = -1), with s.mu held.
func (s *streamer) lock(e *postEntry, n int) {
	if s.held == nil {
		s.held = map[*streamTable]*[lockModes]int{}
	}
	tables, mode := e.locks()
	for _, t := range tables {
		if t == nil {
			continue
		}
		if s.held[t] == nil {
			s.held[t] = new([lockModes]int)
		}
		s.held[t][mode] += n
	}
}

// job is a worker's next piece of work: a copy or a build.
type job struct {
	copy  *copyTask
	build *postEntry
}

// take hands a worker its next piece of work. ok is false when there is
// nothing left for it to do.
func (s *streamer) take(r role) (j job, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.err != nil {
			return job{}, false
		}
		if r == builder {
			if i := s.runnable(); i >= 0 {
				return job{build: s.startBuild(i)}, true
			}
		}
		switch {
		case r == copier && len(s.copies) > 0:
			t := s.copies[0]
			s.copies = s.copies[1:]
			s.pending++
			return job{copy: &t}, true
		case r == copier:
			return job{}, false
		case len(s.copies) == 0 && s.pending == 0 && s.building == 0:
			return job{}, false
		}
		s.cond.Wait() // a copy or build in flight may yet queue builds
	}
}

// startBuild takes the i-th queued build out of the queue and counts it in
// flight, with its locks (with s.mu held).
func (s *streamer) startBuild(i int) *postEntry {
	e := s.builds[i]
	s.builds = slices.Delete(s.builds, i, i+1)
	s.lock(&e, 1)
	s.building++
	// Once every copy is done, a build that would leave cores idle (fewer
	// builds than sessions) may use PostgreSQL's parallel workers for them
	// (PostgreSQL 15 builds only b-trees so).
	if e.kind.isIndexBuild() && (e.am == "" || e.am == "btree") && len(s.copies) == 0 && s.pending == 0 {
		e.parallel = max(0, s.r.Target.jobs()-s.building-len(s.builds))
	}
	return &e
}

func (s *streamer) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.cond.Broadcast()
}
