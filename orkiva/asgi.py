"""ASGI entry point, the production server: `gunicorn -c infra/gunicorn.conf.py` runs it under
uvicorn workers (orkiva.worker). What runs where is orkiva.serving's docstring."""
import gc
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "orkiva.settings")
os.environ["ORKIVA_ASGI"] = "1"  # read by settings: this process serves MCP natively (orkiva/urls.py)

import django  # noqa: E402
from django.urls import get_resolver  # noqa: E402

django.setup(set_prefix=False)

from orkiva.mcp.view import asgi_shutdown, asgi_startup  # noqa: E402
from orkiva.serving import OrkivaASGIHandler  # noqa: E402

application = OrkivaASGIHandler()
application.lifespan_hooks.append((asgi_startup, asgi_shutdown))

# Import the URL map, and with it every view, the MCP SDK and its models, while the worker boots
# (as orkiva/wsgi.py does; docs/performance.md), then keep it out of the collector's full collections.
get_resolver().url_patterns
gc.freeze()
