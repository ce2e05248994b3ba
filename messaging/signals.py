"""Signals of the messaging layer."""
from django.dispatch import Signal

# A thread's messages now reach `seq` (a post or a status message, committed). Sent on the thread
# whose transaction stored it, with thread_id and seq; orkiva.mcp.waiting wakes this process's waiters.
thread_advanced = Signal()

# PostgreSQL's NOTIFY channel for the same event, to every bridge process (payload "<thread id>:<seq>").
THREAD_CHANNEL = "orkiva_thread"
