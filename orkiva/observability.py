"""Counters and log hooks the service layer calls; the metrics backend is wired here alone."""
from __future__ import annotations

import logging

from orkiva.context import current_request_id

logger = logging.getLogger("orkiva")


def record_failure(err) -> None:
    """A client-caused failure: logged with its code and the request id."""
    logger.info("request failed code=%s status=%s request_id=%s", err.code, err.status, current_request_id())
