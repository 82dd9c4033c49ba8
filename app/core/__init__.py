"""Infrastructure shared by every domain: database, tenancy, errors, security, jobs, paging."""
