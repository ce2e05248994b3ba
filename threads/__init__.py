"""Threads: lifecycle, participants, the status state machine and the summary."""
