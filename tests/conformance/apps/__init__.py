"""Small function apps the conformance tier indexes with the Python worker."""
