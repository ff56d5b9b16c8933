package discord

import (
	"context"
	"testing"
	"unicode/utf8"

	"github.com/bwmarrin/discordgo"

	"github.com/stagebot/stagebot/bot/discord/discordtest"
)

// Discord refuses a command whose names, descriptions and choices add up
// to more than 8,000 characters, or with over 25 options in a level, or a
// required option after an optional one.
func TestSlashCommand_WithinDiscordsLimits(t *testing.T) {
	cmd := slashCommand()
	total := utf8.RuneCountInString(cmd.Name) + utf8.RuneCountInString(cmd.Description)
	if len(cmd.Options) > 25 {
		t.Errorf("%d subcommands, Discord takes 25", len(cmd.Options))
	}
	for _, sub := range cmd.Options {
		total += utf8.RuneCountInString(sub.Name) + utf8.RuneCountInString(sub.Description)
		optional := false
		for _, o := range sub.Options {
			total += utf8.RuneCountInString(o.Name) + utf8.RuneCountInString(o.Description)
			if o.Required && optional {
				t.Errorf("/stage %s: required option %s after an optional one", sub.Name, o.Name)
			}
			optional = optional || !o.Required
		}
	}
	if total > 8000 {
		t.Errorf("/stage is %d characters of names and descriptions; Discord takes 8,000", total)
	}
	t.Logf("/stage: %d subcommands, %d characters", len(cmd.Options), total)
}

// A READY after a dropped session lists the same guilds: /stage is written
// once a process (Discord limits how often commands may be written), and
// again after a write that failed.
func TestRegister_OncePerGuildAndProcess(t *testing.T) {
	fake := discordtest.New(t)
	a, err := New(Options{Token: "test-token", APIURL: fake.URL()})
	if err != nil {
		t.Fatal(err)
	}
	ready := &discordgo.Ready{Application: &discordgo.Application{ID: discordtest.AppID}, Guilds: []*discordgo.Guild{{ID: discordtest.Guild}}}
	fake.SetDown(true)
	a.register(context.Background(), ready)
	fake.SetDown(false)
	a.register(context.Background(), ready)
	a.register(context.Background(), ready)
	if n := fake.Registrations(); n != 1 {
		t.Errorf("/stage written %d times after a failed write and two READYs, want 1", n)
	}
}
