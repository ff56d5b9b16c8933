package web

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/store"
)

// Options configure a Server.
type Options struct {
	// Listen is the address, e.g. 127.0.0.1:9187 (port 0: any free port).
	Listen string
	// Token, when set, must come as "Authorization: Bearer <token>" on
	// every path but /healthz.
	Token string
	// Platform names the chat platform in the metrics' labels.
	Platform string
	Logger   *slog.Logger
	// Hosts are the names, besides localhost and IP addresses, that a
	// request's Host header may give: the name people and proxies reach
	// the page by. Any other name is refused, so that a web page whose
	// DNS name was rebound to this address cannot read the status page
	// from a browser on this machine.
	Hosts []string
	// Follower, when set, names the process that leads while this one
	// follows ("" while this one leads): several bots share a store, and
	// only the leader is ready.
	Follower func() string
}

// Server is the HTTP side of one bot.
type Server struct {
	o       Options
	b       *bot.Bot
	st      store.Store
	metrics *Metrics
	ln      net.Listener
	srv     *http.Server
}

// New builds a server for b, which keeps its state in st; metrics is where
// the bot's runs are counted (give it to the bot as its Observer).
func New(o Options, b *bot.Bot, st store.Store, metrics *Metrics) *Server {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{o: o, b: b, st: st, metrics: metrics}
	mux := http.NewServeMux()
	mux.Handle("GET /", s.guard(http.HandlerFunc(s.status)))
	mux.Handle("GET /runs/", s.runGuard(http.HandlerFunc(s.run)))
	mux.Handle("GET /calendar.ics", s.calendarGuard(http.HandlerFunc(s.calendar)))
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.Handle("GET /readyz", s.guard(http.HandlerFunc(s.readyz)))
	mux.Handle("GET /metrics", s.guard(promhttp.HandlerFor(metrics.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(o.Logger.Handler(), slog.LevelWarn)})))
	// Every page is a small GET: bounded in time, headers and body, and
	// an idle keep-alive connection is closed.
	s.srv = &http.Server{
		Handler:           limitBody(mux),
		ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 16 << 10,
	}
	return s
}

// maxBody is the most a request may send: the pages take no body.
const maxBody = 4 << 10

func limitBody(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxBody {
			http.Error(w, "request body too large: the status pages take none", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		h.ServeHTTP(w, r)
	})
}

// hostAllowed reports whether a request's Host may be answered: an IP
// address (which DNS cannot rebind), localhost, the listen address's own
// name, or one of Options.Hosts.
func (s *Server) hostAllowed(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if net.ParseIP(host) != nil || strings.EqualFold(host, "localhost") {
		return true
	}
	if h, _, err := net.SplitHostPort(s.o.Listen); err == nil && h != "" && strings.EqualFold(h, host) {
		return true
	}
	for _, h := range s.o.Hosts {
		if strings.EqualFold(strings.TrimSuffix(h, "."), host) {
			return true
		}
	}
	return false
}

func (s *Server) checkHost(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.hostAllowed(r.Host) {
			http.Error(w, "this page is not served for the host name "+r.Host+": add it to http.hosts in the config if people reach stagebot by it", http.StatusMisdirectedRequest)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// Listen opens the address; Addr is then known.
func (s *Server) Listen() error {
	ln, err := net.Listen("tcp", s.o.Listen)
	if err != nil {
		return fmt.Errorf("http.listen %s: %w", s.o.Listen, err)
	}
	s.ln = ln
	return nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve answers until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.srv.Shutdown(sctx)
	}()
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (s *Server) guard(h http.Handler) http.Handler {
	h = s.checkHost(h)
	if s.o.Token == "" {
		return h
	}
	want := []byte("Bearer " + s.o.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="stagebot"`)
			http.Error(w, "unauthorized: send Authorization: Bearer <http.token>", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	if s.o.Follower != nil {
		// A follower is healthy while it can read the store.
		if leader := s.o.Follower(); leader != "" {
			answer(w, !strings.HasPrefix(leader, "unknown"), "ok: following "+leader)
			return
		}
	}
	ok, why := s.b.Health()
	answer(w, ok, why)
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.o.Follower != nil {
		if leader := s.o.Follower(); leader != "" {
			answer(w, false, "follower of "+leader)
			return
		}
	}
	ok, why := s.b.Ready(r.Context())
	answer(w, ok, why)
}

func answer(w http.ResponseWriter, ok bool, why string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprintln(w, why)
}

// Metrics are the bot's Prometheus metrics. Label values are names from
// the config (targets, pipelines, step kinds, outcomes), never what people
// type.
type Metrics struct {
	reg      *prometheus.Registry
	runs     *prometheus.CounterVec
	runTime  *prometheus.HistogramVec
	stepTime *prometheus.HistogramVec
	copied   *prometheus.CounterVec
	snapshot func(context.Context) (bot.Snapshot, error)
	platform string
}

var _ bot.Observer = (*Metrics)(nil)

// NewMetrics registers the metrics; snapshot reads the bot's state at
// each scrape (set it with SetSource once the bot exists).
func NewMetrics(platform string) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), platform: platform}
	m.runs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stagebot_runs_total", Help: "Runs that ended, by target, pipeline and outcome."}, []string{"target", "pipeline", "outcome"})
	m.runTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "stagebot_run_duration_seconds", Help: "How long runs took, from start to end.",
		Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200}}, []string{"target", "pipeline", "outcome"})
	m.stepTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "stagebot_step_duration_seconds", Help: "How long steps took, by kind.",
		Buckets: []float64{0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 3600}}, []string{"target", "kind", "state"})
	m.copied = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "stagebot_copied_total", Help: "What refreshes copied into staging: bytes (table data and indexes) and rows."}, []string{"target", "unit"})
	m.reg.MustRegister(m.runs, m.runTime, m.stepTime, m.copied, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), (*stateCollector)(m))
	return m
}

// SetSource says where the state shown at each scrape comes from.
func (m *Metrics) SetSource(b *bot.Bot) { m.snapshot = b.Snapshot }

// RunEnded implements bot.Observer.
func (m *Metrics) RunEnded(r *store.Run) {
	m.runs.WithLabelValues(r.Target, r.Pipeline, string(r.State)).Inc()
	if !r.StartedAt.IsZero() && !r.EndedAt.IsZero() {
		m.runTime.WithLabelValues(r.Target, r.Pipeline, string(r.State)).Observe(r.EndedAt.Sub(r.StartedAt).Seconds())
	}
	for _, s := range r.Steps {
		if !s.StartedAt.IsZero() {
			m.stepTime.WithLabelValues(r.Target, s.Kind, string(s.State)).Observe(s.Duration.Seconds())
		}
		if s.Bytes > 0 {
			m.copied.WithLabelValues(r.Target, "bytes").Add(float64(s.Bytes))
		}
		if s.Rows > 0 {
			m.copied.WithLabelValues(r.Target, "rows").Add(float64(s.Rows))
		}
	}
}

var (
	dataAge     = prometheus.NewDesc("stagebot_data_age_seconds", "Seconds since the data staging holds left production: the end of the refresh that made the copy in place (absent: never refreshed).", []string{"target"}, nil)
	maxAge      = prometheus.NewDesc("stagebot_data_max_age_seconds", "How old the target's data may get (its max_age; absent: no limit).", []string{"target"}, nil)
	lastSuccess = prometheus.NewDesc("stagebot_last_success_timestamp_seconds", "When the target's last successful refresh ended.", []string{"target"}, nil)
	unavailable = prometheus.NewDesc("stagebot_swap_unavailable_seconds", "How long staging was unavailable in the target's last swap.", []string{"target"}, nil)
	holdsActive = prometheus.NewDesc("stagebot_holds_active", "Active holds, by target (all: every target).", []string{"target"}, nil)
	runsWaiting = prometheus.NewDesc("stagebot_runs_waiting", "Runs not yet started, by what they wait for.", []string{"reason"}, nil)
	runsRunning = prometheus.NewDesc("stagebot_runs_running", "Runs under way.", nil, nil)
	outboxQueue = prometheus.NewDesc("stagebot_outbox_queued", "Messages waiting to be sent to chat.", []string{"platform"}, nil)
	sendFails   = prometheus.NewDesc("stagebot_outbox_send_failures_total", "Sends to chat that failed (refused, rate-limited or unanswered; each retry counts).", []string{"platform"}, nil)
	chatUp      = prometheus.NewDesc("stagebot_chat_connected", "1 when the chat connection is up.", []string{"platform"}, nil)
	scrapeOK    = prometheus.NewDesc("stagebot_state_up", "1 when the bot's state could be read for this scrape.", nil, nil)
)

// stateCollector reads the bot's state at each scrape.
type stateCollector Metrics

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{dataAge, maxAge, lastSuccess, unavailable, holdsActive, runsWaiting, runsRunning, outboxQueue, sendFails, chatUp, scrapeOK} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	if c.snapshot == nil {
		ch <- prometheus.MustNewConstMetric(scrapeOK, prometheus.GaugeValue, 0)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.snapshot(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(scrapeOK, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(scrapeOK, prometheus.GaugeValue, 1)
	for t, at := range s.DataFrom {
		ch <- prometheus.MustNewConstMetric(dataAge, prometheus.GaugeValue, s.Now.Sub(at).Seconds(), t)
	}
	for t, at := range s.LastSuccess {
		ch <- prometheus.MustNewConstMetric(lastSuccess, prometheus.GaugeValue, float64(at.UnixNano())/1e9, t)
	}
	for t, d := range s.MaxAge {
		ch <- prometheus.MustNewConstMetric(maxAge, prometheus.GaugeValue, d.Seconds(), t)
	}
	for t, d := range s.Unavailable {
		ch <- prometheus.MustNewConstMetric(unavailable, prometheus.GaugeValue, d.Seconds(), t)
	}
	for t, n := range s.Holds {
		ch <- prometheus.MustNewConstMetric(holdsActive, prometheus.GaugeValue, float64(n), t)
	}
	for _, reason := range []string{"hold", "approval", "schedule", "run"} {
		ch <- prometheus.MustNewConstMetric(runsWaiting, prometheus.GaugeValue, float64(s.Waiting[reason]), reason)
	}
	ch <- prometheus.MustNewConstMetric(runsRunning, prometheus.GaugeValue, float64(s.Running))
	ch <- prometheus.MustNewConstMetric(outboxQueue, prometheus.GaugeValue, float64(s.Outbox), c.platform)
	ch <- prometheus.MustNewConstMetric(sendFails, prometheus.CounterValue, float64(s.SendFailures), c.platform)
	up := 0.0
	if s.Connected {
		up = 1
	}
	ch <- prometheus.MustNewConstMetric(chatUp, prometheus.GaugeValue, up, c.platform)
}
