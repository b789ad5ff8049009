"""Results: how ratings are shown and counted."""
