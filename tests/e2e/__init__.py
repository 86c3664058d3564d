"""End-to-end tests: the CLI, the browser, crashes, PostgreSQL, Ray and the deployment files."""
