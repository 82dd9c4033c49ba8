"""The admin console's core (issue 28): who of a tenant's users may use the console and
with which role (ConsoleMember), what each role may do (`may`), and the tenant's own OIDC
client the console signs in through (ConsoleClient). The pages are app.api.console."""
