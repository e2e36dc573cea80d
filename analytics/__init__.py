"""Website analytics ingestion: HTTP in, Redis queue, batched PostgreSQL writes, fast stats."""
