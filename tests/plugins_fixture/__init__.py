"""Plugins the tests load into real containers (see ``recorder``)."""
