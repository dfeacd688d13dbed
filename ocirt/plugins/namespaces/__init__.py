"""The ``namespaces`` plugin: creates or joins the namespaces ``linux.namespaces`` lists."""
