"""What the commands show a person: tables for the screen. Nothing below this layer draws."""
