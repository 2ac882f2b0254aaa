"""The engine's contracts: plugins and hooks, steps and recipes, configuration, instruments,
calibration types, frame metadata and the error taxonomy."""
