"""Developer tooling that is neither deployed nor part of the app."""
