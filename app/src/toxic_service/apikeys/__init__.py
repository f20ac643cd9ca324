"""API keys and per-key quotas for the Perspective routes and (TOXIC_API_KEYS_NATIVE) the native API.

keyfile.py  the keys file: names, SHA-256 of each key, quotas (standard library only: the CLI uses it)
quota.py    the host-wide token buckets in SQLite, shared by every gunicorn worker
gate.py     the per-request check, `authorize(request, settings)`, and the refusals in each API's shape

`toxic-service keys create|list|revoke` (commands/keys.py) manages the file.
"""
