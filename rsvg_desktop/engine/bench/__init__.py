"""``rsvg bench``: run, score, speed (engine jobs, reports and plots)."""
