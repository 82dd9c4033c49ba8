"""Moving users in and out (issue 24): Auth0-compatible import and export jobs, the CLI's
Firebase, Django and Gatehouse imports, and full-fidelity exports."""
