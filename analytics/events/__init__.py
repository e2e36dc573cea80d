"""The event: the ingest contract that decodes it, and the one type it travels as (`Event`)."""
