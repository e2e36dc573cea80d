"""The HTTP surface: app assembly, ingestion, reporting, health, access rules, CORS, OpenAPI, the uvicorn protocol."""
