package main

import (
	"os"

	"github.com/jackc/pgx/v5/pgconn"
)

// collectSecrets gathers, in one pass over the validated config, every
// value the bot removes from what it says, logs and audits: passwords in
// DSNs, tokens, and the values of steps' secret-looking variables (a
// step's output can show them). Secret-looking environment variables the
// config refers to were gathered as they were expanded.
func (c *Config) collectSecrets() {
	add := func(vals ...string) {
		for _, s := range vals {
			if s != "" {
				c.secrets = append(c.secrets, s)
			}
		}
	}
	password := func(dsn string) {
		if cfg, err := pgconn.ParseConfig(dsn); err == nil && dsn != "" {
			add(cfg.Password)
		}
	}
	if c.Store.Type == "postgres" {
		password(c.Store.DSN)
	}
	add(c.HTTP.Token, c.Chat.Slack.AppToken, c.Chat.Slack.BotToken, c.Chat.Discord.Token, c.Chat.Matrix.AccessToken)
	for _, dsn := range c.ProductionServers {
		password(dsn)
	}
	for _, t := range c.Targets {
		if t == nil {
			continue
		}
		if t.Database != nil {
			password(t.Database.Production)
			password(t.Database.Staging)
			if m := t.Database.Masking; m != nil && m.parsed != nil {
				add(string(m.parsed.Key))
			}
		}
		for _, p := range t.Pipelines {
			if p == nil {
				continue
			}
			for i := range p.Steps {
				add(stepSecrets(&p.Steps[i])...)
			}
			for i := range p.Finally {
				add(stepSecrets(&p.Finally[i])...)
			}
		}
	}
}

// stepSecrets are the values of a step's secret-looking variables, set in
// its env or inherited from the bot's environment.
func stepSecrets(s *StepConfig) []string {
	var out []string
	for _, name := range s.InheritEnv {
		if v := os.Getenv(name); secretName.MatchString(name) && len(v) >= 4 {
			out = append(out, v)
		}
	}
	for k, v := range s.Env {
		if secretName.MatchString(k) && len(v) >= 4 {
			out = append(out, v)
		}
	}
	return out
}
