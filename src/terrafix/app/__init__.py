"""Configuration, composition roots (fly, replay, demo) and the command-line interface."""
