"""The writer role: batches from the queue into PostgreSQL, exactly once."""
