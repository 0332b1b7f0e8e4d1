"""What every layer uses: errors, file writing, configuration, the command line."""
