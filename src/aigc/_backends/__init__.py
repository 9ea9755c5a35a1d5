"""aigc's built-in backends, each registered through the aigc.backends entry points (internal)."""
