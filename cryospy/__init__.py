"""CryoSpy: self-hosted, privacy-first home surveillance.

The installed distribution maps the repository's deployables under this namespace:

* ``cryospy.common``     – the small package both device and server need (sealed format, keys, object keys,
  settings schema). It imports nothing from the deployables.
* ``cryospy.functions``  – the Chalice app (``functions/``): HTTP routes and ``@app.on_s3_event`` handlers.
* ``cryospy.edge_agent`` – the capture client (``edge_agent/``).
* ``cryospy.web``        – templates and the static dashboard builder (``web/``).
* ``cryospy.infra``      – MinIO bootstrap and the self-hosted runtime (``infra/``).
* ``cryospy.cli``        – the ``cryospy`` command line.
"""

__version__ = "0.1.0"
