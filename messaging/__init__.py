"""Messaging: ordered messages, idempotent posts, read cursors, unread counts and open items."""
