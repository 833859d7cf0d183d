"""Cameras as the server knows them: the registry, authentication and its defences, what devices report."""
