"""The ``hooks`` plugin: the spec's ``hooks`` (prestart, createRuntime, createContainer...)."""
