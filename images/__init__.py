"""Image recipes and the builder that turns a recipe into a cached, content-addressed LXD image."""
