package bottest

// Hostile is text that reaches the bot from people or databases and that a
// platform would read as markup if it were posted as is: mass mentions,
// mentions of someone else, links with a label that lies, HTML, terminal
// escapes. Every adapter is tested on it: posted back in an answer, each
// must notify nobody and link nowhere.
var Hostile = []string{
	"<!channel>",
	"<!here>",
	"<!everyone>",
	"<!subteam^S0123|@oncall>",
	"&lt;!channel&gt;",
	"<@U2>",
	"<@U2|bob>",
	"<#C0123|general>",
	"<https://evil.example|click to approve>",
	"@everyone",
	"@here",
	"@room",
	"<@123456789012345678>",
	"<@&123456789012345678>",
	"[approve](https://evil.example)",
	"<a href=\"https://evil.example\">approve</a>",
	"<script>alert(1)</script>",
	"<img src=x onerror=alert(1)>",
	"@alice:test.local",
	"\x1b]0;owned\x07\x1b[2J",
	"\u202egnp.exe",
}
