"""Pipeline stages: each reads an artifact (or image folder) and writes a new artifact with a manifest."""
