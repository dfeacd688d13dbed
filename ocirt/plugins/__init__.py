"""Built-in plugins: every isolation feature of ocirt lives here, one folder each."""
