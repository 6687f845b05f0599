"""The ``interp`` command line: a thin face over the Python API (one ``cmd_*.py`` per topic)."""
