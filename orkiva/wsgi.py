"""WSGI entry point: `gunicorn orkiva.wsgi` (see infra/gunicorn.conf.py)."""
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orkiva.settings")
application = get_wsgi_application()
