"""Development conveniences: embedded PostgreSQL and Valkey when no URLs are set."""
