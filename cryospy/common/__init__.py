"""Code that both the edge agent and the server need; never imports a deployable."""
