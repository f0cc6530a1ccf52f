"""Built-in demo assets that need no licensed FLAME files."""
