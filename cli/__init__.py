"""The bundled client: a small wire-protocol client and its command line."""
