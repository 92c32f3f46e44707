"""The event schema and validator, the item vocabulary, and the one session rule."""
