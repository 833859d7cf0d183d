"""A real RTSP camera for tests and benchmarks: GStreamer's RTSP server serving generated camera media."""
