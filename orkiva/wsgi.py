"""WSGI entry point (`manage.py runserver`, or any WSGI server). Production runs orkiva.asgi under
`gunicorn -c infra/gunicorn.conf.py`."""
import gc
import os

from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orkiva.settings")
application = get_wsgi_application()

# Import the URL map, and with it every view, the MCP SDK and its models, while the worker boots.
# Django does it on the first request: that took half a second of a busy worker (mostly with the GIL
# held), and every request arriving at the worker meanwhile waited behind it (docs/performance.md).
get_resolver().url_patterns

# What is loaded now lives as long as the process: keep it out of the collector's full collections,
# which otherwise walk all of it, a pause of the whole worker (about 100 ms under load, 4-5 ms after).
gc.freeze()
