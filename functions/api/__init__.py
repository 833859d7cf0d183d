"""The Chalice app's HTTP plumbing: strict JSON bodies, field validation, client addresses."""
