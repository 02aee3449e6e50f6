"""What a shrink says: the report (table and JSON), the per-package view, the HTML
treemap and compressed sizes."""
