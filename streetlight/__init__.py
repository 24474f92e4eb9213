"""The composition root: the command line, settings and the wiring that starts the stages."""
