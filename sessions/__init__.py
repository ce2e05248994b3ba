"""Agent sessions: the latest resumable session per agent and workspace, kept alive by heartbeats."""
