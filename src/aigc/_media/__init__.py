"""Media encoding and decoding with embedded provenance (internal)."""
