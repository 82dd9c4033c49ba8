"""A tenant's connections to other identity providers (issue 27): OIDC issuers and OAuth2
providers (Google, Microsoft, Apple, GitHub, any OIDC issuer) its users may sign in with on
the hosted login page, managed through Auth0's Connections API. The tenant's own password
database is a connection too, listed but not stored here."""
