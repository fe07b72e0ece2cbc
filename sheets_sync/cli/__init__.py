"""The sheets-sync command line."""
