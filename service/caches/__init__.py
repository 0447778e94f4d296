"""Read-side state kept in memory and kept right by the event feed."""
