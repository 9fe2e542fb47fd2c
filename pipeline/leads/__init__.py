"""From changes to what an investigator checks: changes × permits → leads, and their evidence."""
