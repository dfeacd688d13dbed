"""The ``network`` plugin: loopback's company. See ``plugin.py`` for the map."""
