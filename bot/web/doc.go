// Package web serves stagebot over HTTP for the people and machines that
// watch it: a status page at / (targets, data age, holds, waiting runs, the
// running run's live progress, history) and /runs/N (one run's steps and
// log), /healthz (the process's loop turns), /readyz (its store answers
// and chat is connected) and /metrics (Prometheus). It changes nothing:
// chat stays the place where state changes. A bearer token, when set,
// guards every path but /healthz.
package web
