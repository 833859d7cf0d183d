"""One clip's way in: upload checks, ingest, MP4 parsing, thumbnail, hash chain, quarantine, HLS."""
