"""Built-in plugins: registered through the same ``ccdflow.plugins`` entry point as any other."""
