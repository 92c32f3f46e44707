"""Reading event logs in every supported format, and time-based splits."""
