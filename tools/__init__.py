"""Command-line programs of Prism (installed as `sdk.tools`), thin layers over the public API."""
