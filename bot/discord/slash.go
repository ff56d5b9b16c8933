package discord

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/bwmarrin/discordgo"

	"github.com/stagebot/stagebot/bot"
	"github.com/stagebot/stagebot/commands"
)

// slashName is the application command people type: /stage <verb> ….
const slashName = "stage"

// slashCommand is /stage with one subcommand per verb of the command
// table, its options typed (a target, a pipeline and a run are completed
// from the bot's state as people type).
func slashCommand() *discordgo.ApplicationCommand {
	cmd := &discordgo.ApplicationCommand{Name: slashName, Description: "Refresh staging, hold it, approve runs", Type: discordgo.ChatApplicationCommand}
	for _, s := range commands.Table() {
		sub := &discordgo.ApplicationCommandOption{Type: discordgo.ApplicationCommandOptionSubCommand, Name: s.Name, Description: s.Summary}
		for _, o := range s.Slash() {
			opt := &discordgo.ApplicationCommandOption{Type: discordgo.ApplicationCommandOptionString, Name: o.Name, Description: o.Description, Required: o.Required}
			switch o.Kind {
			case "run":
				opt.Type = discordgo.ApplicationCommandOptionInteger
				opt.MinValue = new(float64)
				*opt.MinValue = 1
				opt.Autocomplete = true
			case "target", "pipeline":
				opt.Autocomplete = true
			}
			sub.Options = append(sub.Options, opt)
		}
		cmd.Options = append(cmd.Options, sub)
	}
	return cmd
}

// SetCompleter implements bot.Completer.
func (a *Adapter) SetCompleter(f func(ctx context.Context, kind, typed string) []bot.Completion) {
	a.mu.Lock()
	a.complete = f
	a.mu.Unlock()
}

// register puts /stage in every guild the bot is in, replacing what was
// there: a verb that went away goes away in Discord too. Guild commands
// show at once (global ones take up to an hour).
func (a *Adapter) register(ctx context.Context, r *discordgo.Ready) {
	if r.Application == nil || r.Application.ID == "" {
		a.log.Warn("discord: READY named no application: /stage is not registered")
		return
	}
	cmds := []*discordgo.ApplicationCommand{slashCommand()}
	for _, g := range r.Guilds {
		// Once a process: a READY after a dropped session lists the same
		// guilds, and Discord limits how often commands may be written.
		a.mu.Lock()
		done := a.registered[g.ID]
		if !done {
			if a.registered == nil {
				a.registered = map[string]bool{}
			}
			a.registered[g.ID] = true
		}
		a.mu.Unlock()
		if done {
			continue
		}
		if _, err := a.s.ApplicationCommandBulkOverwrite(r.Application.ID, g.ID, cmds, discordgo.WithContext(ctx)); err != nil {
			a.log.Warn("discord: register /stage in a guild: invite the bot with the applications.commands scope", "guild", g.ID, "err", err)
			a.mu.Lock()
			delete(a.registered, g.ID) // the next READY tries again
			a.mu.Unlock()
			continue
		}
		a.log.Info("discord: /stage registered", "guild", g.ID)
	}
}

// fromSlash answers /stage at once (Discord wants an answer within 3
// seconds; the bot's reply follows in the channel) and turns it into the
// command it stands for.
func (a *Adapter) fromSlash(ctx context.Context, i *discordgo.InteractionCreate) (bot.Incoming, bool) {
	data := i.ApplicationCommandData()
	if data.Name != slashName || len(data.Options) != 1 {
		return bot.Incoming{}, false
	}
	sub := data.Options[0]
	spec := commands.Lookup(sub.Name)
	u := interactionUser(i)
	if spec == nil || u == nil {
		return bot.Incoming{}, false
	}
	values := map[string]string{}
	for _, o := range sub.Options {
		values[o.Name] = fmt.Sprint(o.Value)
		if o.Type == discordgo.ApplicationCommandOptionInteger {
			values[o.Name] = strconv.FormatInt(o.IntValue(), 10)
		}
	}
	text := spec.SlashText(a.prefix(), values)
	go a.answer(ctx, i, &discordgo.InteractionResponse{Type: discordgo.InteractionResponseChannelMessageWithSource,
		Data: &discordgo.InteractionResponseData{Content: "On it: `/" + slashName + " " + strings.TrimPrefix(text, a.prefix()+" ") + "`", Flags: discordgo.MessageFlagsEphemeral,
			AllowedMentions: &discordgo.MessageAllowedMentions{}}})
	return bot.Incoming{ID: i.ID, Channel: i.ChannelID, User: user(u), Text: text, Direct: true}, true
}

// autocomplete answers a person typing an option with the bot's choices.
func (a *Adapter) autocomplete(ctx context.Context, i *discordgo.InteractionCreate) {
	data := i.ApplicationCommandData()
	var focused *discordgo.ApplicationCommandInteractionDataOption
	if len(data.Options) == 1 {
		for _, o := range data.Options[0].Options {
			if o.Focused {
				focused = o
			}
		}
	}
	a.mu.Lock()
	complete := a.complete
	a.mu.Unlock()
	choices := []*discordgo.ApplicationCommandOptionChoice{}
	if focused != nil && complete != nil {
		for _, c := range complete(ctx, focused.Name, fmt.Sprint(focused.Value)) {
			var v any = c.Value
			if focused.Type == discordgo.ApplicationCommandOptionInteger {
				n, err := strconv.ParseInt(c.Value, 10, 64)
				if err != nil {
					continue
				}
				v = n
			}
			choices = append(choices, &discordgo.ApplicationCommandOptionChoice{Name: c.Label, Value: v})
		}
	}
	a.answer(ctx, i, &discordgo.InteractionResponse{Type: discordgo.InteractionApplicationCommandAutocompleteResult,
		Data: &discordgo.InteractionResponseData{Choices: choices}})
}

func (a *Adapter) answer(ctx context.Context, i *discordgo.InteractionCreate, r *discordgo.InteractionResponse) {
	if err := a.s.InteractionRespond(i.Interaction, r, discordgo.WithContext(ctx)); err != nil {
		a.log.Warn("discord: answer an interaction", "err", err)
	}
}

func interactionUser(i *discordgo.InteractionCreate) *discordgo.User {
	switch {
	case i.Member != nil && i.Member.User != nil:
		return i.Member.User
	case i.User != nil:
		return i.User
	}
	return nil
}

func (a *Adapter) prefix() string {
	if a.opts.Prefix != "" {
		return a.opts.Prefix
	}
	return "!stage"
}
