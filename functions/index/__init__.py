"""The clip index: one interface (``protocol.ClipIndex``), typed records (``records``), the embedded TinyDB store
(``store``) built from visible parts — encrypted files (``tinydb_files``, ``fragment_log``), running totals
(``usage``), change listeners (``listeners``) — and the admin query (``query``)."""
