"""What gunicorn workers import (`toxic_service.api.wsgi:app`), after forking.

Settings come from TOXIC_* variables (and TOXIC_CONFIG_FILE).
"""

from toxic_service.api import create_app

app = create_app()
