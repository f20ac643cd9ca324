"""Controller-side tools. A package so that tests and bench/ import them (`from tools.local_host import Instance`)
with the repository root on sys.path; each module with a `main` also runs as a script (`tools/local_host.py up`)."""
