"""Device and dtype resolution, the process-wide model cache (internal)."""
