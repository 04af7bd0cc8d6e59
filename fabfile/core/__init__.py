"""Library the task collections stand on: planning, store and the one SSH transport."""
