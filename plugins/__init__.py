"""cnnbench's built-in architecture plugins (installed as ``bench_plugins``). Each module is a plugin,
registered through the ``cnnbench`` entry-point group exactly as a third-party plugin would be."""
