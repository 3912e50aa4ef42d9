"""What the commands show a person: progress reporters (progress.py) and tables (tables.py). Nothing below this layer
draws on the terminal."""
