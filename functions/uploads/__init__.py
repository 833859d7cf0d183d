"""Upload slots: presigned PUTs for keys the server chose, and their per-device rate limit."""
